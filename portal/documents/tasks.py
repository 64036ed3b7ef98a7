"""The accountant's documents on the workers: ЭДО sending and status reading, and closing documents by e-mail, each
a periodic sweep over its outbox table (the CLI commands `documents edo-sweep` / `mail-sweep` stay for operators).

Both sweeps are idempotent (each outbox row is taken under its lock and marked in the same transaction), so a second
worker or a sweep re-run after a crash sends nothing twice; the Huey lock only spares the database a duplicate pass."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import current_app
from huey import crontab
from huey.exceptions import TaskLockedException

from portal.db import get_database, utcnow
from portal.documents import edo, mailing
from portal.documents.service import form_documents
from portal.tasks import huey, periodic, task

log = logging.getLogger(__name__)


@periodic(crontab(minute="*"), name="portal.documents.edo_sweep")
def edo_sweep_task() -> None:
    if current_app.config.get("EDO_BACKEND", "emulator") == "off":
        return
    _sweep("documents-edo-sweep", edo.sweep, "ЭДО")


@periodic(crontab(minute="*"), name="portal.documents.mail_sweep")
def mail_sweep_task() -> None:
    _sweep("documents-mail-sweep", mailing.sweep, "closing documents by e-mail")


def _sweep(lock: str, sweep: Callable[..., list[str]], label: str) -> None:
    """One pass of an outbox sweep under its Huey lock; a pass already running elsewhere makes this one a no-op."""
    try:
        with huey.lock_task(lock), get_database().session() as db:
            lines = sweep(db, now=utcnow(), config=current_app.config, instance_path=current_app.instance_path)
    except TaskLockedException:
        return
    for line in lines:
        log.info("%s: %s", label, line)


@task(retries=5, retry_delay=10, name="portal.documents.form_documents")
def form_documents_task(upd_ids: list[int]) -> None:
    """Render the УПД a payment numbered (and any advance invoice or УКД pending with it). Idempotent: a document
    already formed is skipped, one being formed elsewhere is taken with SKIP LOCKED by the tick's retry path."""

    with get_database().session() as db:
        form_documents(db, upd_ids, now=utcnow(), config=current_app.config)
