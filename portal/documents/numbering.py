"""Document numbers «YYYY-NNNNNN»: gapless per calendar year and never reused, also under concurrent requests."""

from __future__ import annotations

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
