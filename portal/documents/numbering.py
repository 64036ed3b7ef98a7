"""Document numbers «YYYY-NNNNNN»: gapless per calendar year and never reused, also under concurrent requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from portal.documents.models import DocumentCounter

INVOICE = "invoice"
UPD = "upd"
ADVANCE = "advance"
UKD = "ukd"


def format_number(year: int, serial: int) -> str:
    return f"{year}-{serial:06d}"


def next_serial(db: Session, kind: str, year: int) -> int:
    """Take the next number of `kind` in `year` inside the caller's transaction.

    One statement: the first document of a year creates the counter row at 1, every later one increments it in
    SQL and reads the result back. The counter row stays locked until the caller commits or rolls back (on
    PostgreSQL the upsert's row lock, under which a concurrent taker waits and then counts from the committed
    value; on SQLite the write lock, as SQLite serialises writers). So the number is used only if the document
    that carries it is committed too — a rolled-back issue leaves no gap — and two requests never get the same
    number.
    """
    table = DocumentCounter.__table__
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table).values(kind=kind, year=year, last_number=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.kind, table.c.year], set_={"last_number": table.c.last_number + 1}
    ).returning(table.c.last_number)
    return int(db.execute(stmt).scalar_one())


@dataclass(frozen=True)
class Taken:
    """A number taken for a document dated `day`: its text as printed and its place in the year's sequence."""

    text: str
    serial: int
    day: date


def take_number(db: Session, kind: str, day: date, prefix: str = "") -> Taken:
    """The next number of `kind` for a document dated `day` («А-» or «К-» before it for the advance invoice, УКД)."""
    serial = next_serial(db, kind, day.year)
    return Taken(prefix + format_number(day.year, serial), serial, day)
