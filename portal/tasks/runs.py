"""Task runs: start long work as a queued row, run it once with progress a person can watch, retry what failed.

A feature defines its work with `run_task(kind)`; the page that starts it calls `start_run(...)` and redirects to
the run's page (`tasks.run_show`), which shows a bar with counts, updated by a little JavaScript polling the JSON
endpoint and by a refresh without it, then the result or what failed with a retry button.

Live progress is kept in the queue's storage (the SQLite file or Redis), not in the database: the work itself
often runs in one long transaction (a statement import, a CRM sync apply), and on SQLite a second connection
writing progress rows would wait for that transaction's lock.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from huey import crontab
from huey.constants import EmptyData
from sqlalchemy.orm import Session

from portal.db import get_database, utcnow

from . import enqueue_after_commit, huey, periodic, task, task_app
from .models import RunStatus, TaskRun

log = logging.getLogger(__name__)

# A queued run nobody has picked up for this long lost its message (or the queue is very busy: a second message
# is harmless, the claim lets one through).
LOST_AFTER = timedelta(minutes=2)
# A running run that has reported no progress for this long belonged to a worker that died (killed, its server
# gone): the sweep queues it again and another worker takes it over. The work reports progress every few hundred
# items, so a live worker is never silent this long.
SILENT_AFTER = timedelta(minutes=5)
RETRIES = 3


class RunFailed(Exception):
    """The work cannot be done as asked (a broken file, a CRM that refuses us): failed at once, no retry."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class RunContext:
    """What the work of a run gets: its ids and parameters, the uploaded file, a way to report progress."""

    run_id: int
    kind: str
    account_id: int | None
    user_id: int | None
    params: dict[str, Any]

    def input_data(self) -> bytes:
        with get_database().session() as db:
            return db.scalar(sa.select(TaskRun.input_data).where(TaskRun.id == self.run_id)) or b""

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Report `done` of `total`; cheap (one write to the queue's storage), call it every few hundred items."""
        put_progress(self.run_id, done, total, message)


@dataclass(frozen=True)
class Outcome:
    message: str
    result_url: str | None = None


RunFn = Callable[[RunContext], Outcome]
_RUNNERS: dict[str, Any] = {}


def _progress_key(run_id: int) -> str:
    return f"task-run-progress:{run_id}"


def put_progress(run_id: int, done: int, total: int | None, message: str | None = None) -> None:
    try:
        live = {"done": done, "total": total, "message": message, "at": time.time()}
        huey.storage.put_data(_progress_key(run_id), json.dumps(live).encode())
    except Exception:  # progress is a courtesy: the work goes on without it
        log.warning("progress of task run %s not stored", run_id, exc_info=True)


def get_progress(run_id: int) -> dict[str, Any] | None:
    try:
        raw = huey.storage.peek_data(_progress_key(run_id))
    except Exception:
        return None
    if raw is EmptyData or raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _drop_progress(run_id: int) -> None:
    try:
        huey.storage.pop_data(_progress_key(run_id))
    except Exception:
        pass


def run_task(kind: str, *, retries: int = RETRIES, retry_delay: float = 5) -> Callable[[RunFn], Any]:
    """Define the work of runs of `kind`. The function gets a RunContext and returns an Outcome; it may raise
    RunFailed (shown as is, no retry); any other exception is retried with backoff, then shown as failed."""

    def decorator(fn: RunFn) -> Any:
        @task(retries=retries, retry_delay=retry_delay, name=f"task_run.{kind}", context=True)
        def run(run_id: int, task: Any = None) -> None:
            _execute(fn, run_id, final=task is None or not task.retries)

        _RUNNERS[kind] = run
        return run

    return decorator


def _claim(run_id: int, now: datetime) -> RunContext | None:
    """Take the run unless it is finished or another worker has it: one conditional update decides."""
    with get_database().session() as db:
        won = db.execute(
            sa.update(TaskRun)
            .where(TaskRun.id == run_id, TaskRun.status == RunStatus.QUEUED.value)
            .values(
                status=RunStatus.RUNNING.value,
                attempts=TaskRun.attempts + 1,
                started_at=now,
                heartbeat_at=now,
                error=None,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if not won:
            return None
        run = db.get(TaskRun, run_id)
        assert run is not None
        ctx = RunContext(run.id, run.kind, run.account_id, run.created_by_user_id, dict(run.params or {}))
    put_progress(run_id, 0, None)  # the first sign of life the sweep looks for
    return ctx


def _execute(fn: RunFn, run_id: int, *, final: bool) -> None:
    ctx = _claim(run_id, utcnow())
    if ctx is None:
        log.info("task run %s is finished or taken by another worker", run_id)
        return
    try:
        outcome = fn(ctx)
    except RunFailed as exc:
        _finish(run_id, RunStatus.FAILED, error=exc.message)
        return
    except Exception as exc:
        log.exception("task run %s (%s) failed", run_id, ctx.kind)
        text = getattr(exc, "message", None) or f"внутренняя ошибка ({type(exc).__name__})"
        if final:
            _finish(run_id, RunStatus.FAILED, error=f"Не удалось выполнить: {text}")
        else:
            _finish(run_id, RunStatus.QUEUED, error=f"Не удалось, пробуем ещё раз: {text}")
        raise
    _finish(run_id, RunStatus.DONE, message=outcome.message, result_url=outcome.result_url)


def _finish(
    run_id: int,
    status: RunStatus,
    *,
    message: str | None = None,
    error: str | None = None,
    result_url: str | None = None,
) -> None:
    progress = get_progress(run_id) or {}
    now = utcnow()
    with get_database().session() as db:
        run = db.get(TaskRun, run_id)
        if run is None:
            return
        run.status = status.value
        run.heartbeat_at = now
        if progress.get("total") is not None:
            run.total = int(progress["total"])
        if progress.get("done") is not None:
            run.done = int(progress["done"])
        if status == RunStatus.DONE:
            run.done = run.total if run.total is not None else run.done
            run.message = message
            run.result_url = result_url
            run.finished_at = now
        elif status == RunStatus.FAILED:
            run.error = error
            run.finished_at = now
        else:
            run.error = error
    if status != RunStatus.QUEUED:
        _drop_progress(run_id)


# ----- what pages do -----


def start_run(
    db: Session,
    *,
    kind: str,
    title: str,
    account_id: int | None,
    user_id: int | None,
    params: dict[str, Any] | None = None,
    input_data: bytes | None = None,
) -> TaskRun:
    """Add a queued run and send it to the queue when `db` commits. Does not commit."""
    if kind not in _RUNNERS:
        raise KeyError(f"no run_task({kind!r}) is defined")
    now = utcnow()
    run = TaskRun(
        kind=kind,
        title=title[:200],
        account_id=account_id,
        created_by_user_id=user_id,
        status=RunStatus.QUEUED.value,
        params=params or {},
        input_data=input_data,
        done=0,
        attempts=0,
        created_at=now,
        heartbeat_at=now,
    )
    db.add(run)
    db.flush()
    enqueue_after_commit(db, _RUNNERS[kind], run.id)
    return run


def retry_run(db: Session, run: TaskRun) -> bool:
    """Queue a failed run again (the retry button). Does not commit; False if it is not failed."""
    if run.status != RunStatus.FAILED.value or run.kind not in _RUNNERS:
        return False
    run.status = RunStatus.QUEUED.value
    run.error = None
    run.done = 0
    run.finished_at = None
    run.heartbeat_at = utcnow()
    db.flush()
    enqueue_after_commit(db, _RUNNERS[run.kind], run.id)
    return True


def get_run(db: Session, run_id: int) -> TaskRun | None:
    return db.get(TaskRun, run_id)


def latest_run(db: Session, *, kind: str, account_id: int | None) -> TaskRun | None:
    q = sa.select(TaskRun).where(TaskRun.kind == kind).order_by(TaskRun.id.desc()).limit(1)
    q = q.where(TaskRun.account_id == account_id) if account_id is not None else q.where(TaskRun.account_id.is_(None))
    return db.scalars(q).first()


def run_state(run: TaskRun) -> dict[str, Any]:
    """The run as the page and its JSON show it, live counts included while it runs."""
    done, total, note = run.done, run.total, None
    if run.status == RunStatus.RUNNING.value:
        live = get_progress(run.id) or {}
        done = int(live.get("done") or 0)
        total = live.get("total") if live.get("total") is not None else total
        note = live.get("message")
    percent = max(0, min(100, done * 100 // total)) if total else None
    return {
        "id": run.id,
        "status": run.status,
        "finished": run.finished,
        "done": done,
        "total": total,
        "percent": percent,
        "note": note,
        "message": run.message,
        "error": run.error,
        "result_url": run.result_url,
    }


# ----- the sweep -----


def sweep(now: datetime) -> int:
    """Send again the runs whose message was lost (queued too long) or whose worker died (running and silent)."""
    config = task_app().config
    lost_after = timedelta(seconds=int(config.get("TASK_LOST_AFTER_SECONDS") or LOST_AFTER.total_seconds()))
    silent_after = timedelta(seconds=int(config.get("TASK_SILENT_AFTER_SECONDS") or SILENT_AFTER.total_seconds()))
    resent = 0
    with get_database().session() as db:
        rows = list(
            db.scalars(
                sa.select(TaskRun).where(
                    sa.or_(
                        sa.and_(TaskRun.status == RunStatus.QUEUED.value, TaskRun.heartbeat_at < now - lost_after),
                        sa.and_(TaskRun.status == RunStatus.RUNNING.value, TaskRun.heartbeat_at < now - silent_after),
                    )
                )
            )
        )
        for run in rows:
            if run.kind not in _RUNNERS:
                continue
            if run.status == RunStatus.RUNNING.value:
                live = get_progress(run.id) or {}
                if float(live.get("at") or 0) > now.timestamp() - silent_after.total_seconds():
                    continue  # still reporting: a long run, not a dead one
                # Only if nobody finished or took it meanwhile; the claim then lets one worker through.
                taken = db.execute(
                    sa.update(TaskRun)
                    .where(TaskRun.id == run.id, TaskRun.status == RunStatus.RUNNING.value)
                    .values(
                        status=RunStatus.QUEUED.value,
                        heartbeat_at=now,
                        error="Обработчик остановился, задача запущена снова.",
                    )
                    .execution_options(synchronize_session=False)
                ).rowcount
                if not taken:
                    continue
            else:
                run.heartbeat_at = now
            enqueue_after_commit(db, _RUNNERS[run.kind], run.id)
            resent += 1
    if resent:
        log.info("sweep: %d task runs sent again", resent)
    return resent


@periodic(crontab(minute="*"), name="portal.tasks.sweep")
def sweep_task() -> None:
    sweep(utcnow())
