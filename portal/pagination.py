"""Keyset pagination: a page of a long list read from an index, whatever the list's length.

A page is asked as "the n rows after (or before) this key" — `WHERE (k1, k2, id) < (:k1, :k2, :id) ORDER BY k1 DESC,
k2 DESC, id DESC LIMIT n + 1` — so the database walks an index from the key and stops after n + 1 rows, where
OFFSET would walk (and a COUNT would read) every row before the page. The links «Дальше» / «Назад» carry the key of
the page's last / first row; the extra row only says whether there is a next page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

T = TypeVar("T")
Key = tuple[Any, ...]

# The URL parameters that carry a key: after = the next page (further down), before = the previous one.
AFTER = "after"
BEFORE = "before"


def encode_key(values: Sequence[Any]) -> str:
    """A row's sort key as a short URL-safe token (dates and datetimes as ISO text, the rest as JSON)."""
    plain = [
        {"dt": v.isoformat()} if isinstance(v, datetime) else {"d": v.isoformat()} if isinstance(v, date) else v
        for v in values
    ]
    raw = json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_key(token: str | None, types: Sequence[type]) -> Key | None:
    """The key in a link, checked against the expected types; None for a missing or mangled token (the first page)."""
    if not token or len(token) > 1000:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        plain = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(plain, list) or len(plain) != len(types):
        return None
    values: list[Any] = []
    for value, kind in zip(plain, types, strict=True):
        try:
            if kind is datetime and isinstance(value, dict) and isinstance(value.get("dt"), str):
                value = datetime.fromisoformat(value["dt"])
            elif kind is date and isinstance(value, dict) and isinstance(value.get("d"), str):
                value = date.fromisoformat(value["d"])
            elif kind is int and type(value) is int and abs(value) < 2**62:
                pass
            elif kind is str and isinstance(value, str) and len(value) <= 500:
                pass
            else:
                return None
        except ValueError:
            return None
        values.append(value)
    return tuple(values)


@dataclass
class KeysetPage(Generic[T]):
    """One page of rows and the keys of the pages on either side (None: there is none)."""

    rows: list[T]
    next_key: str | None = None  # «Дальше»: the rows after this page's last
    prev_key: str | None = None  # «Назад»: the rows before this page's first
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_pages(self) -> bool:
        return self.next_key is not None or self.prev_key is not None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)


def page_from(
    rows: list[T],
    key_of: Callable[[T], Sequence[Any]],
    *,
    limit: int,
    after: Key | None,
    before: Key | None,
) -> KeysetPage[T]:
    """The page from up to limit + 1 rows read in the walking direction (reversed already when walking back)."""
    if before is not None:
        # Read backwards, newest-to-oldest reversed: the extra row, if any, is the first one.
        more = len(rows) > limit
        rows = rows[1:] if more else rows
        return KeysetPage(
            rows,
            next_key=encode_key(key_of(rows[-1])) if rows else None,
            prev_key=encode_key(key_of(rows[0])) if more and rows else None,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return KeysetPage(
        rows,
        next_key=encode_key(key_of(rows[-1])) if more and rows else None,
        prev_key=encode_key(key_of(rows[0])) if after is not None and rows else None,
    )


def keyset_select(
    stmt: sa.Select[Any],
    columns: Sequence[Any],
    *,
    limit: int,
    after: Key | None = None,
    before: Key | None = None,
    descending: bool = True,
) -> sa.Select[Any]:
    """The statement limited to the page after (or before) a key, ordered by the key columns (all one direction)."""
    cols = sa.tuple_(*columns)
    forward = before is None
    if after is not None and forward:
        stmt = stmt.where(cols < sa.tuple_(*after) if descending else cols > sa.tuple_(*after))
    if before is not None:
        stmt = stmt.where(cols > sa.tuple_(*before) if descending else cols < sa.tuple_(*before))
    # Walking back reads the other way from the key, and the caller reverses the rows.
    down = descending == forward
    return stmt.order_by(*[c.desc() if down else c.asc() for c in columns]).limit(limit + 1)


def keyset_page(
    db: Session,
    stmt: sa.Select[Any],
    columns: Sequence[Any],
    key_of: Callable[[Any], Sequence[Any]],
    *,
    limit: int,
    after: Key | None = None,
    before: Key | None = None,
    descending: bool = True,
    scalars: bool = True,
) -> KeysetPage[Any]:
    """Run one page of stmt: one query, whatever the length of the list."""
    if after is not None and before is not None:
        before = None
    query = keyset_select(stmt, columns, limit=limit, after=after, before=before, descending=descending)
    result = db.scalars(query) if scalars else db.execute(query)
    rows = list(result.all())
    if before is not None:
        rows.reverse()
    return page_from(rows, key_of, limit=limit, after=after, before=before)


def keys_from_args(args: Any, types: Sequence[type]) -> tuple[Key | None, Key | None]:
    """(after, before) from a request's arguments; a mangled key is the first page."""
    after = decode_key(args.get(AFTER), types)
    before = decode_key(args.get(BEFORE), types) if after is None else None
    return after, before
