"""The CRM's background work: a sync or first import started by the owner (a task run with progress), the periodic
sync of every connected CRM, and the outbox's delivery (no threads in the web process)."""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from huey import crontab
from huey.exceptions import TaskLockedException

from portal.accounts.models import User
from portal.db import get_database, utcnow
from portal.tasks import enqueue, huey, periodic, task
from portal.tasks.runs import Outcome, RunContext, RunFailed, run_task

from .factory import CrmSettings, build_client, client_factory
from .models import ConnectionStatus, CrmConnection, CrmOutbox, OutboxStatus
from .outbox import LEASE, DeliveryResult, deliver_outbox
from .sync import SyncResult, sync_account

log = logging.getLogger(__name__)

SYNC_RUN = "crm_sync"
SYNC_TITLES = {"connect": "Первый импорт пользователей из CRM", "manual": "Синхронизация с CRM"}


def _sync(account_id: int, *, trigger: str, actor_id: int | None = None, ctx: RunContext | None = None) -> SyncResult:
    database = get_database()
    settings = CrmSettings.from_config(current_app.config)
    with database.session() as db:
        connection = db.scalars(sa.select(CrmConnection).where(CrmConnection.account_id == account_id)).first()
        if connection is None or not connection.is_connected:
            raise RunFailed("CRM не подключена.")
        actor = db.get(User, actor_id) if actor_id is not None else None
        with build_client(settings, connection, database.sessionmaker, max_retries=2) as client:
            return sync_account(
                db, account_id, client, utcnow(), trigger=trigger, actor=actor, progress=ctx.progress if ctx else None
            )


def _deliver(account_id: int | None, limit: int = 200) -> DeliveryResult:
    database = get_database()
    settings = CrmSettings.from_config(current_app.config)
    factory = client_factory(settings, database.sessionmaker, max_retries=1)
    lease = timedelta(seconds=int(current_app.config.get("CRM_OUTBOX_LEASE_SECONDS") or LEASE.total_seconds()))
    return deliver_outbox(database.session, factory, utcnow(), limit=limit, account_id=account_id, lease=lease)


@run_task(SYNC_RUN)
def sync_run(ctx: RunContext) -> Outcome:
    """The owner's sync (or the first import after connecting), then what the outbox holds for this CRM."""
    assert ctx.account_id is not None
    result = _sync(ctx.account_id, trigger=ctx.params.get("trigger", "manual"), actor_id=ctx.user_id, ctx=ctx)
    if not result.ok:
        raise RunFailed(result.message)
    message = result.message
    delivery = _deliver(ctx.account_id)
    if delivery.attempted:
        message = f"{message} {delivery.message}"
    return Outcome(message, f"/crm/runs/{result.run_id}")


@task(retries=5, retry_delay=10)
def deliver_outbox_task(account_id: int | None) -> None:
    """Send what the messenger queued for this account's CRM; items that fail wait with their own backoff and the
    periodic delivery picks them up when due."""
    result = _deliver(account_id)
    if result.attempted:
        log.info("CRM outbox of account %s: %s", account_id, result.message)


@task(retries=2, retry_delay=30)
def sync_account_task(account_id: int) -> None:
    result = _sync(account_id, trigger="cron")
    log.info("CRM sync of account %s: %s", account_id, result.message)


@periodic(crontab(minute="*/5"), name="portal.seats.crm.sync_all")
def sync_all() -> None:
    """Replaces the cron line `flask seats sync`: one task per connected CRM, so workers share the work."""
    try:
        with huey.lock_task("crm-sync-all"):
            with get_database().session() as db:
                ids = list(
                    db.scalars(
                        sa.select(CrmConnection.account_id).where(
                            CrmConnection.access_token_enc.is_not(None),
                            CrmConnection.status != ConnectionStatus.DISCONNECTED.value,
                        )
                    )
                )
            for account_id in ids:
                enqueue(sync_account_task, account_id)
    except TaskLockedException:
        log.info("another worker is sending the CRM syncs")


@periodic(crontab(minute="*"), name="portal.seats.crm.deliver_due")
def deliver_due() -> None:
    """Every minute: a delivery task for each account with due outbox items (a retry's time has come, or the
    message sent after the commit was lost)."""
    now = utcnow()
    with get_database().session() as db:
        ids = list(
            db.scalars(
                sa.select(CrmOutbox.account_id)
                .where(CrmOutbox.status == OutboxStatus.PENDING.value, CrmOutbox.next_attempt_at <= now)
                .distinct()
            )
        )
    for account_id in ids:
        enqueue(deliver_outbox_task, account_id)
