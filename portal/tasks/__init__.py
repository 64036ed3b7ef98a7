"""Background work on a Huey task queue: how to define a task, and how to enqueue it after the commit that needs it.

The queue lives in a SQLite file in the instance folder by default (its worker is started by `make run`) and in
Redis in production (`TASK_QUEUE_URL=redis://…`, workers on any number of servers: `flask --app wsgi worker`).
Tests run tasks in the enqueuing process (`TASK_QUEUE_URL=immediate`) unless they start a real worker.

Defining a task (in a feature's `tasks.py`, which create_app imports by name so every process registers it)::

    from portal.tasks import task

    @task(retries=5, retry_delay=10)
    def form_upd(upd_id: int) -> None:
        database = get_database()          # an app context is pushed for the task
        with database.session() as db:     # a session of its own; never the request's get_db()
            ...                            # re-read the rows, lock them, and do nothing if already done

A task must be idempotent: it may run twice (a retry after a crash, the sweep re-enqueueing a lost message), so it
re-reads the database, takes the row locks the services already use, and finishes quietly when the work is done.
Arguments are ids and plain values, never ORM objects.

Enqueueing after commit (the worker must see what the transaction wrote)::

    from portal.tasks import enqueue_after_commit

    enqueue_after_commit(db, form_upd, upd.id)   # sent when `db` commits; dropped if it rolls back
    db.commit()

A message lost between the commit and the queue (a process killed right then, Redis down) is not lost work: the
periodic sweep (`portal.tasks.runs.sweep`) re-enqueues task runs still queued after a while, and features
re-derive their own due work (the CRM outbox's due items, the billing tick's missing УПД).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, current_app, has_app_context
from huey import Huey
from huey import consumer as consumer_module
from huey.storage import MemoryStorage, RedisStorage, SqliteStorage
from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

IMMEDIATE = "immediate"
_PENDING_KEY = "portal.tasks.after_commit"

# One queue per process, as Huey's decorators need it at import time; `configure` points it at the storage the
# app's settings name. `results=False`: outcomes people see are kept in `task_runs`, not in the queue.
huey = Huey("portal", results=False, immediate=True, utc=True)

_configured: str | None = None
_app: Flask | None = None
_lock = threading.Lock()


def default_queue_url(instance_path: str) -> str:
    return f"sqlite:///{Path(instance_path) / 'tasks.db'}"


def configure(url: str) -> None:
    """Point the queue at `url`: `sqlite:///path`, `redis://host:port/db`, or `immediate` (run where enqueued)."""
    global _configured
    with _lock:
        if url == _configured:
            return
        if url == IMMEDIATE:
            storage: Any = MemoryStorage(huey.name)
            immediate = True
        elif url.startswith(("redis://", "rediss://", "unix://")):
            storage = RedisStorage(huey.name, url=url)
            immediate = False
        elif url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            storage = SqliteStorage(huey.name, filename=str(path))
            immediate = False
        else:
            raise ValueError(f"TASK_QUEUE_URL must be sqlite:///…, redis://… or immediate, got {url!r}")
        huey._immediate = immediate
        huey.storage = storage
        _configured = url


def init_app(app: Flask) -> None:
    """Point the queue at the app's TASK_QUEUE_URL; tasks enqueued outside a request run in this app."""
    global _app
    configure(app.config["TASK_QUEUE_URL"])
    _app = app


def task_app() -> Flask:
    if has_app_context():
        return current_app._get_current_object()  # type: ignore[attr-defined]
    if _app is None:
        raise RuntimeError("no app: create_app() must run before a task executes")
    return _app


def task(
    *, retries: int = 3, retry_delay: float = 5, retry_backoff: float = 2, name: str | None = None, **options: Any
) -> Callable[[Callable[..., Any]], Any]:
    """A Huey task run inside an app context, retried `retries` times with exponential backoff.

    The returned object is Huey's TaskWrapper: `fn(...)` enqueues now, `fn.call_local(...)` runs here."""

    def decorator(fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def in_app(*args: Any, **kwargs: Any) -> Any:
            if has_app_context():
                return fn(*args, **kwargs)
            with task_app().app_context():
                return fn(*args, **kwargs)

        return huey.task(
            retries=retries,
            retry_delay=retry_delay,
            retry_backoff=retry_backoff,
            name=name or f"{fn.__module__}.{fn.__name__}",
            **options,
        )(in_app)

    return decorator


def periodic(schedule: Callable[..., bool], *, name: str | None = None) -> Callable[[Callable[..., Any]], Any]:
    """A periodic task (`huey.crontab(minute="*/5")`), run by every worker with periodic tasks on; the work itself
    must be safe on every server at once (row locks, SKIP LOCKED), as the CLI commands it replaces were."""

    def decorator(fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def in_app() -> Any:
            with task_app().app_context():
                return fn()

        return huey.periodic_task(schedule, name=name or f"{fn.__module__}.{fn.__name__}")(in_app)

    return decorator


def enqueue(task_fn: Any, *args: Any, **kwargs: Any) -> None:
    """Send now. A failure to reach the queue is logged, not raised: the sweep finds the work later."""
    try:
        task_fn(*args, **kwargs)
    except Exception:
        log.exception("could not enqueue %s%r; the periodic sweep will pick the work up", task_fn, args)


def enqueue_after_commit(db: Session, task_fn: Any, *args: Any, **kwargs: Any) -> None:
    """Send `task_fn(*args, **kwargs)` once `db`'s transaction commits; nothing is sent if it rolls back."""
    if not db.in_transaction():
        db.begin()  # so that a rollback before the next commit drops it, as it drops the rows
    pending: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = db.info.setdefault(_PENDING_KEY, [])
    entry = (task_fn, args, kwargs)
    if entry not in pending:
        pending.append(entry)


@event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: the real commit is still to come
    pending = session.info.pop(_PENDING_KEY, None)
    for task_fn, args, kwargs in pending or ():
        enqueue(task_fn, *args, **kwargs)


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_rollback(session: Session, previous: Any) -> None:
    if previous.parent is None:
        session.info.pop(_PENDING_KEY, None)


def create_consumer(app: Flask, *, workers: int, periodic: bool) -> Any:
    """A thread consumer whose scheduler runs the periodic tasks every TASK_PERIODIC_SECONDS (Huey: every 60 s)."""
    seconds = int(app.config.get("TASK_PERIODIC_SECONDS") or 60)

    class Scheduler(consumer_module.Scheduler):
        periodic_task_seconds = seconds

    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=periodic, check_worker_health=True)
    if seconds != consumer_module.Scheduler.periodic_task_seconds:
        # The scheduler was built in the constructor; build it again from the subclass (Huey's documented hook
        # for this is `scheduler_class`, read by `_create_scheduler`).
        consumer.scheduler_class = Scheduler
        consumer.scheduler = consumer._create_process(consumer._create_scheduler(), "Scheduler")
    return consumer


def start_consumer(app: Flask, *, workers: int = 2, periodic: bool = True, signals: bool = True) -> Any:
    """Start a Huey consumer for `app` (threads); `signals=False` when it runs beside a server in one process."""
    global _app
    init_app(app)
    _app = app
    consumer = create_consumer(app, workers=workers, periodic=periodic)
    if not signals:
        consumer._set_signal_handlers = lambda: None
    consumer.start()
    return consumer


__all__ = [
    "huey",
    "task",
    "periodic",
    "enqueue",
    "enqueue_after_commit",
    "configure",
    "init_app",
    "start_consumer",
    "create_consumer",
]
