"""Storage used by an account, as the messenger backend reports it; the quota comes from the plan."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account
from portal.seats.errors import AccountNotFound

MAX_BYTES = 2**63 - 1  # what a BIGINT column holds


class InvalidStorageValue(ValueError):
    """The reported usage is not a non-negative whole number of bytes; the message is for the caller."""


def parse_used_bytes(value: Any) -> int:
    """Accept only a JSON integer ≥ 0: bools, floats (even 5.0), strings and nulls are refused."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidStorageValue("used_bytes должно быть целым неотрицательным числом байт.")
    if value < 0:
        raise InvalidStorageValue("used_bytes не может быть отрицательным.")
    if value > MAX_BYTES:
        raise InvalidStorageValue("used_bytes слишком велико.")
    return value


def get_storage_used(db: Session, account_id: int) -> int:
    used = db.scalar(sa.select(Account.storage_used_bytes).where(Account.id == account_id))
    if used is None:
        raise AccountNotFound()
    return int(used)


def set_storage_used(db: Session, *, account_id: int, used_bytes: Any) -> int:
    """Record the messenger's latest figure (the report replaces the previous one); returns the previous figure.

    Reports arrive every few minutes, so they are not audited: the audit log is for people's changes and money.
    Does not commit.
    """
    value = parse_used_bytes(used_bytes)
    account = db.get(Account, account_id) if isinstance(account_id, int) and not isinstance(account_id, bool) else None
    if account is None:
        raise AccountNotFound()
    previous = int(account.storage_used_bytes or 0)
    account.storage_used_bytes = value
    db.flush()
    return previous
