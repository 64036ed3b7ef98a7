"""The notices sweep as a periodic task: every ten minutes on the workers (safe on several at once)."""

from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app
from huey import crontab
from huey.exceptions import TaskLockedException
from sqlalchemy.orm import Session

from portal.accounts.sms import make_sms_backend
from portal.db import get_database, utcnow
from portal.notices import service
from portal.support.email import get_email_backend
from portal.tasks import huey, periodic

log = logging.getLogger(__name__)


def run_sweep(db: Session, now: datetime) -> list[str]:
    """The sweep with this app's mail settings (needs an app context: the task and the CLI have one)."""
    config = current_app.config
    return service.sweep(
        db,
        now,
        backend=get_email_backend(),
        sender=config["EMAIL_FROM"],
        base_url=config["BASE_URL"],
        secret_key=config["SECRET_KEY"],
        sms_backend=make_sms_backend(config),  # for whoever chose SMS for a topic on /notifications
    )


@periodic(crontab(minute="*/10"), name="portal.notices.sweep")
def sweep_task() -> None:
    """Each letter's unique key keeps it single even without the lock; the lock spares a second identical pass."""
    try:
        with huey.lock_task("notices-sweep"), get_database().session() as db:
            done = run_sweep(db, utcnow())
    except TaskLockedException:
        log.info("notices sweep already running on another worker")
        return
    for line in done:
        log.info("notices: %s", line)
