"""What the console's views share: the staff member acting, an account or a 404, an id typed in a query, a
statement upload started."""

from __future__ import annotations

from typing import Any

from flask import abort
from flask_login import current_user

from portal.db import get_db
from portal.support import overview


def current_actor() -> Any:
    return current_user._get_current_object()  # type: ignore[attr-defined]


def account_or_404(account_id: int) -> Any:
    account = overview.get_account(get_db(), account_id)
    if account is None:
        abort(404)
    return account


def parse_id(raw: str | None) -> int | None:
    """A row id typed in a query or form; None for anything else."""
    raw = (raw or "").strip()
    # Fewer than 10 digits: a longer number is no row of an INTEGER column and would overflow the driver.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None
