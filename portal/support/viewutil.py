"""What the console's views share: the staff member acting, an account or a 404, an id typed in a query, a
statement upload started."""

from __future__ import annotations

from typing import Any

from flask import abort
from flask_login import current_user
from sqlalchemy.orm import Session
from wtforms import FileField

from portal.db import get_db
from portal.payments.statement import StatementError
from portal.payments.tasks import start_statement_import
from portal.support import overview
from portal.tasks.models import TaskRun


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


def start_statement_upload(db: Session, field: FileField) -> TaskRun | None:
    """The import task for the statement uploaded in `field`, committed; None with the refusal on the field.

    A task, not the request: a large statement takes longer than a page view; the console shows its progress."""
    upload = field.data
    try:
        run = start_statement_import(
            db, upload.read(), file_name=upload.filename or "statement.txt", actor=current_actor()
        )
    except StatementError as exc:
        db.rollback()
        field.errors = [f"Файл не принят, ничего не загружено. {exc}"]
        return None
    db.commit()
    return run
