"""Billing's scheduled work as a periodic task: the tick every minute, in place of a cron line (the CLI stays)."""

from __future__ import annotations

import logging

from flask import current_app
from huey import crontab
from huey.exceptions import TaskLockedException

from portal.billing.tick import tick
from portal.db import get_database, utcnow
from portal.tasks import huey, periodic

log = logging.getLogger(__name__)


@periodic(crontab(minute="*"), name="portal.billing.tick")
def tick_task() -> None:
    """The tick is safe on every server at once (each change is marked on its row); the lock only spares the
    database a second identical pass when several workers share one queue."""
    try:
        with huey.lock_task("billing-tick"), get_database().session() as db:
            done = tick(db, utcnow(), grace_days=current_app.config["GRACE_DAYS"])
    except TaskLockedException:
        log.info("billing tick already running on another worker")
        return
    for line in done:
        log.info("billing tick: %s", line)
