"""Accepting a bank statement uploaded on a page: its import queued, or the reason it was refused on the form."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from wtforms import FileField

from portal.payments.statement import StatementError
from portal.payments.tasks import start_statement_import
from portal.tasks.models import TaskRun


def accept_statement(db: Session, field: FileField, *, actor: Any) -> TaskRun | None:
    """Queue the import of the file in `field` and commit; a file that is no statement is refused whole: the session
    is rolled back and the reason shown under the field. Imported by a task: a large statement takes longer than a
    page view, so the page shows the run's progress."""
    upload = field.data
    try:
        run = start_statement_import(db, upload.read(), file_name=upload.filename or "statement.txt", actor=actor)
    except StatementError as exc:
        db.rollback()
        field.errors = [f"Файл не принят, ничего не загружено. {exc}"]
        return None
    db.commit()
    return run
