"""Payments' background work: a bank statement uploaded through the web, imported as a task run with progress."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from portal.accounts.models import User
from portal.audit import record_audit
from portal.db import get_database, utcnow
from portal.documents.invoices import DocumentsError
from portal.payments.bank import import_statement
from portal.payments.statement import StatementError, parse_statement
from portal.tasks.models import TaskRun
from portal.tasks.runs import Outcome, RunContext, RunFailed, run_task, start_run

STATEMENT_RUN = "statement_import"


def start_statement_import(db: Session, data: bytes, *, file_name: str, actor: Any) -> TaskRun:
    """Check the file is a statement (a broken one raises StatementError, at once and with its line), then queue
    its import. Does not commit. A 10 000-order statement takes longer than a page view, so the page that
    uploaded it shows the run's progress instead of waiting."""
    parse_statement(data)
    return start_run(
        db,
        kind=STATEMENT_RUN,
        title=f"Загрузка выписки {file_name[:150]}",
        account_id=None,
        user_id=actor.id if actor is not None else None,
        params={"file_name": file_name[:300]},
        input_data=data,
    )


@run_task(STATEMENT_RUN, retries=2)
def statement_import_run(ctx: RunContext) -> Outcome:
    """Idempotent as the import is: payment orders already recorded are skipped, so a second run changes nothing."""
    file_name = str(ctx.params.get("file_name") or "statement.txt")
    data = ctx.input_data()
    with get_database().session() as db:
        actor = db.get(User, ctx.user_id) if ctx.user_id is not None else None
        try:
            result = import_statement(db, data, file_name=file_name, actor=actor, now=utcnow(), progress=ctx.progress)
        except StatementError as exc:
            raise RunFailed(f"Файл не принят, ничего не загружено. {exc}") from exc
        except DocumentsError as exc:
            raise RunFailed(str(exc)) from exc
        ctx.progress(result.incoming, result.incoming)
        record_audit(
            db,
            actor=actor,
            account=None,
            action="support.statement_imported",
            after={
                "import_id": result.import_id,
                "file": file_name[:200],
                "incoming": result.incoming,
                "matched": len(result.matched),
                "unmatched": len(result.unmatched),
                "duplicates": result.duplicates,
            },
        )
    url = f"/support/statements?import={result.import_id}" if result.import_id else "/support/statements"
    return Outcome(f"Выписка загружена. {result.summary}", url)
