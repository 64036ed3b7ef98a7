"""Document numbers «YYYY-NNNNNN»: gapless per calendar year and never reused, also under concurrent requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
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

    The counter row stays locked until the caller commits or rolls back: on PostgreSQL by SELECT … FOR
    UPDATE, on SQLite by the write lock the UPDATE takes (SQLite serialises writers). So the number is
    used only if the document that carries it is committed too — a rolled-back issue leaves no gap —
    and two requests never get the same number.
    """
    table = DocumentCounter.__table__
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # The first document of a year creates the row; a concurrent creator's row wins and ours is a no-op.
    db.execute(insert(table).values(kind=kind, year=year, last_number=0).on_conflict_do_nothing())
    key = (DocumentCounter.kind == kind) & (DocumentCounter.year == year)
    db.execute(sa.select(DocumentCounter.last_number).where(key).with_for_update())
    # Incremented in SQL, not from the value read: on SQLite the read above takes no lock.
    db.execute(sa.update(DocumentCounter).where(key).values(last_number=DocumentCounter.last_number + 1))
    serial = db.execute(sa.select(DocumentCounter.last_number).where(key)).scalar_one()
    return int(serial)


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
