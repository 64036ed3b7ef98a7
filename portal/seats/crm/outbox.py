"""Messenger → CRM: an outbox written with each membership change, delivered after commit by a task with retries.

A user added in the messenger is created in the CRM as a free user; a user removed in the messenger is deactivated
there (DESIGN.md, «User sync»). The membership listener queues the operation in the transaction that makes the
change, so a change and its CRM task are committed or lost together. `deliver_outbox` sends due items: while the
CRM is down or rate-limits, items wait with exponential backoff and the membership stays as the owner left it;
an item that keeps failing is marked failed, and one the CRM refuses is kept with the CRM's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.orm import Session

from portal import tasks as task_queue
from portal.accounts.models import Membership, MembershipStatus, Source
from portal.seats.events import EventKind, MembershipEvent
from portal.seats.members import link_crm_user
from portal.seats.queries import departments_of, find_member_by_crm_id

from .base import CrmAuthError, CrmBlocked, CrmClient, CrmError, CrmRefused, CrmUnavailable, NewCrmUser
from .base import generate_password as _password
from .models import ConnectionStatus, CrmConnection, CrmOutbox, CrmUserState, OutboxOperation, OutboxStatus

log = logging.getLogger(__name__)

CREATE = OutboxOperation.CREATE_USER.value
DEACTIVATE = OutboxOperation.DEACTIVATE_USER.value
ACTIVATE = OutboxOperation.ACTIVATE_USER.value
PENDING = OutboxStatus.PENDING.value
OPEN = (OutboxStatus.PENDING.value, OutboxStatus.FAILED.value, OutboxStatus.REFUSED.value)

MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
# A claimed item is not offered to other workers for this long; a worker that dies mid-call frees it by expiry.
LEASE = timedelta(minutes=5)
# While the CRM refuses our tokens or the account is blocked, items wait without spending their attempts.
AUTH_RETRY = timedelta(minutes=30)

EMAIL_NEEDED = "Нужен e-mail, чтобы создать пользователя в CRM"


def backoff(attempts: int) -> timedelta:
    """Wait after the n-th failed attempt: 30 s, 1 min, 2 min, … up to an hour."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))


# ----- queueing (inside the membership's transaction) -----


def connected_connection(db: Session, account_id: int) -> CrmConnection | None:
    return db.scalars(
        sa.select(CrmConnection).where(
            CrmConnection.account_id == account_id,
            CrmConnection.access_token_enc.is_not(None),
            CrmConnection.status != ConnectionStatus.DISCONNECTED.value,
        )
    ).first()


def is_crm_connected(db: Session, account_id: int) -> bool:
    """For the team page and the API: when True, ask for an e-mail, since the CRM needs one to create the user."""
    return connected_connection(db, account_id) is not None


def _supersede(
    db: Session, membership_id: int, operations: Iterable[str], statuses: Iterable[str], now: datetime
) -> int:
    return db.execute(
        sa.update(CrmOutbox)
        .where(
            CrmOutbox.membership_id == membership_id,
            CrmOutbox.operation.in_(list(operations)),
            CrmOutbox.status.in_(list(statuses)),
        )
        .values(status=OutboxStatus.CANCELED.value, last_error="Отменено более поздним изменением", updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount


def enqueue(
    db: Session,
    *,
    account_id: int,
    membership_id: int,
    operation: str,
    payload: dict[str, Any],
    now: datetime,
    kick: bool = True,
) -> CrmOutbox | None:
    """Queue one operation unless the same one is already waiting; returns the waiting item. Does not commit."""
    existing = db.scalars(
        sa.select(CrmOutbox).where(
            CrmOutbox.membership_id == membership_id, CrmOutbox.operation == operation, CrmOutbox.status == PENDING
        )
    ).first()
    if existing is not None:
        return existing
    item = CrmOutbox(
        account_id=account_id,
        membership_id=membership_id,
        operation=operation,
        payload=payload,
        status=PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    db.add(item)
    db.flush()
    if kick:
        kick_after_commit(db, account_id)
    return item


def on_membership_event(db: Session, event: MembershipEvent) -> None:
    """The membership listener (connected by create_app; takes the event by keyword): queue what the CRM must learn about this messenger change."""
    if event.source == Source.CRM.value:
        return  # the sync's own changes came from the CRM: echoing them back would loop
    kind = event.kind
    if kind not in (EventKind.ADDED, EventKind.DEACTIVATED, EventKind.REACTIVATED):
        return
    if connected_connection(db, event.account_id) is None:
        return
    u = event.user
    payload = {"name": u.name, "email": u.email, "phone": u.phone, "crm_user_id": u.crm_user_id}
    mid = u.membership_id
    if kind == EventKind.DEACTIVATED:
        # Not yet created in the CRM: nothing to deactivate there, just do not create it.
        _supersede(db, mid, [CREATE, ACTIVATE], OPEN, event.at)
        if u.crm_user_id is not None:
            enqueue(
                db, account_id=event.account_id, membership_id=mid, operation=DEACTIVATE, payload=payload, now=event.at
            )
        return
    if u.crm_user_id is None:
        enqueue(db, account_id=event.account_id, membership_id=mid, operation=CREATE, payload=payload, now=event.at)
        return
    if kind == EventKind.REACTIVATED:
        undone = _supersede(db, mid, [DEACTIVATE], [PENDING], event.at)
        if not undone:
            enqueue(
                db, account_id=event.account_id, membership_id=mid, operation=ACTIVATE, payload=payload, now=event.at
            )


def resolve_creates(db: Session, membership_id: int, crm_user_id: int, now: datetime) -> int:
    """The user turned out to be in the CRM already (the sync linked them): their create task is done."""
    return db.execute(
        sa.update(CrmOutbox)
        .where(CrmOutbox.membership_id == membership_id, CrmOutbox.operation == CREATE, CrmOutbox.status.in_(OPEN))
        .values(
            status=OutboxStatus.DONE.value,
            crm_user_id=crm_user_id,
            delivered_at=now,
            updated_at=now,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount


# ----- delivery after commit -----


def kick_after_commit(db: Session, account_id: int) -> None:
    """Deliver this account's queue once `db` commits (nothing if it rolls back): the task queue's after-commit
    sending, the same one every feature uses, rather than a listener of the outbox's own."""
    task_queue.enqueue_after_commit(db, _deliver_soon, account_id)


def _deliver_soon(account_id: int) -> None:
    """Deliver what a request just queued, without making the person wait for the CRM: a task for the account (the
    periodic delivery catches anything whose message is lost)."""
    if not has_app_context():
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    mode = app.config.get("CRM_OUTBOX_DELIVERY") or ("off" if app.testing else "task")
    if mode == "off":
        return
    # A cycle: the crm tasks module imports this one to define the delivery task.
    from .tasks import deliver_outbox_task

    if mode == "sync":
        try:
            deliver_outbox_task.call_local(account_id)
        except Exception:
            log.exception("CRM outbox delivery for account %s failed", account_id)
    else:
        task_queue.enqueue(deliver_outbox_task, account_id)


@dataclass
class DeliveryResult:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    refused: int = 0
    canceled: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.delivered + self.retried + self.failed + self.refused + self.canceled

    @property
    def message(self) -> str:
        if not self.attempted:
            return "Очередь изменений для CRM пуста."
        parts = [
            f"{label}: {n}"
            for label, n in (
                ("отправлено", self.delivered),
                ("ждут повтора", self.retried),
                ("отклонено", self.refused),
                ("не удалось", self.failed),
                ("отменено", self.canceled),
            )
            if n
        ]
        return "Очередь изменений для CRM: " + "; ".join(parts) + "."


DbFactory = Callable[[], AbstractContextManager[Session]]
ClientFactory = Callable[[CrmConnection], CrmClient]


def deliver_outbox(
    db_factory: DbFactory,
    client_factory: ClientFactory,
    now: datetime,
    limit: int = 100,
    *,
    account_id: int | None = None,
    lease: timedelta = LEASE,
) -> DeliveryResult:
    """Send due outbox items to their CRMs; safe to run on every server at once (each item is claimed once).

    `db_factory()` gives a session context that commits on exit (Database.session); every item gets short
    transactions of its own, and no transaction stays open during a CRM call.
    """
    result = DeliveryResult()
    clients: dict[int, CrmClient] = {}
    stopped: set[int] = set()  # accounts whose CRM is down or refuses our tokens: not hammered again this run
    for _ in range(limit):
        claimed = _claim(db_factory, now, account_id, stopped, lease)
        if claimed is None:
            break
        item_id, lease_until = claimed
        with db_factory() as db:
            item = db.get(CrmOutbox, item_id)
            assert item is not None
            connection = connected_connection(db, item.account_id)
            plan = _prepare(db, item, connection, now, result)
        if plan is None:
            continue
        if item.account_id not in clients:
            assert connection is not None
            clients[item.account_id] = client_factory(connection)
        client = clients[item.account_id]
        try:
            outcome: Any = _call(client, plan)
        except CrmError as exc:
            outcome = exc
        except Exception:  # a bug must not lose the item: it is retried and shows up as failing
            log.exception("CRM outbox item %s crashed", item_id)
            outcome = CrmError("внутренняя ошибка портала; мы уже знаем о ней")
        with db_factory() as db:
            _record(db, item_id, lease_until, plan, outcome, now, result, stopped)
    for client in clients.values():
        close = getattr(client, "close", None)
        if close is not None:
            close()
    return result


def _claim(
    db_factory: DbFactory, now: datetime, account_id: int | None, stopped: set[int], lease: timedelta = LEASE
) -> tuple[int, datetime] | None:
    """Take the oldest due item: SKIP LOCKED on PostgreSQL, then a conditional update that only one worker wins."""
    lease_until = now + lease
    with db_factory() as db:
        q = (
            sa.select(CrmOutbox.id)
            .join(CrmConnection, CrmConnection.account_id == CrmOutbox.account_id)
            .where(
                CrmOutbox.status == PENDING,
                CrmOutbox.next_attempt_at <= now,
                CrmConnection.access_token_enc.is_not(None),
                CrmConnection.status != ConnectionStatus.DISCONNECTED.value,
            )
            .order_by(CrmOutbox.id)
            .limit(1)
        )
        if account_id is not None:
            q = q.where(CrmOutbox.account_id == account_id)
        if stopped:
            q = q.where(CrmOutbox.account_id.not_in(stopped))
        if db.get_bind().dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True, of=CrmOutbox)
        for _ in range(20):
            item_id = db.scalar(q)
            if item_id is None:
                return None
            won = db.execute(
                sa.update(CrmOutbox)
                .where(CrmOutbox.id == item_id, CrmOutbox.status == PENDING, CrmOutbox.next_attempt_at <= now)
                .values(next_attempt_at=lease_until)
                .execution_options(synchronize_session=False)
            ).rowcount
            if won:
                return item_id, lease_until
        return None


@dataclass(frozen=True)
class _Plan:
    item_id: int
    account_id: int
    membership_id: int
    user_id: int
    operation: str
    crm_user_id: int | None = None
    name: str = ""
    email: str = ""
    group_id: int | None = None


def _finish(item: CrmOutbox, status: str, now: datetime, result: DeliveryResult, note: str | None = None) -> None:
    item.status = status
    item.updated_at = now
    item.last_error = note
    if status == OutboxStatus.DONE.value:
        item.delivered_at = now
        result.delivered += 1
    elif status == OutboxStatus.CANCELED.value:
        result.canceled += 1
    elif status == OutboxStatus.REFUSED.value:
        result.refused += 1


def _prepare(
    db: Session, item: CrmOutbox, connection: CrmConnection | None, now: datetime, result: DeliveryResult
) -> _Plan | None:
    """Settle what needs no CRM call (already linked, user gone, no e-mail); else say what to send."""
    if connection is None:
        item.next_attempt_at = now  # disconnected meanwhile: it waits for a reconnection
        return None
    membership = db.get(Membership, item.membership_id)
    if membership is None:
        _finish(item, OutboxStatus.CANCELED.value, now, result, "Пользователь удалён")
        return None
    active = membership.status == MembershipStatus.ACTIVE.value
    base = _Plan(item.id, item.account_id, membership.id, membership.user_id, item.operation, membership.crm_user_id)
    if item.operation == CREATE:
        if not active:
            _finish(item, OutboxStatus.CANCELED.value, now, result, "Пользователь уже отключён в мессенджере")
            return None
        if membership.crm_user_id is not None:
            item.crm_user_id = membership.crm_user_id
            _finish(item, OutboxStatus.DONE.value, now, result, None)
            return None
        email = membership.email  # the company's own record; never the person's profile or another company's
        if not email:
            _finish(item, OutboxStatus.REFUSED.value, now, result, EMAIL_NEEDED)
            return None
        known = db.scalars(
            sa.select(CrmUserState).where(
                CrmUserState.account_id == item.account_id, sa.func.lower(CrmUserState.email) == email.lower()
            )
        ).first()
        if known is not None and find_member_by_crm_id(db, item.account_id, known.crm_user_id) is None:
            # The CRM already has someone with this e-mail (the sync saw them): link instead of a refused create.
            _link(db, item.account_id, membership.user_id, known.crm_user_id, now)
            item.crm_user_id = known.crm_user_id
            _finish(item, OutboxStatus.DONE.value, now, result, None)
            if not known.is_active:
                enqueue(
                    db,
                    account_id=item.account_id,
                    membership_id=membership.id,
                    operation=ACTIVATE,
                    payload=dict(item.payload, crm_user_id=known.crm_user_id),
                    now=now,
                    kick=False,
                )
            return None
        # Into the CRM group of the user's CRM department, so the next sync has nothing to move.
        groups = [d.crm_group_id for d in departments_of(db, [membership.id])[membership.id]]
        group_id = next((g for g in groups if g is not None), None)
        return _Plan(
            item.id,
            item.account_id,
            membership.id,
            membership.user_id,
            CREATE,
            None,
            membership.name,
            email,
            group_id,
        )
    if membership.crm_user_id is None:
        _finish(item, OutboxStatus.CANCELED.value, now, result, "Пользователь не связан с CRM")
        return None
    if item.operation == DEACTIVATE and active:
        _finish(item, OutboxStatus.CANCELED.value, now, result, "Пользователь снова активен в мессенджере")
        return None
    if item.operation == ACTIVATE and not active:
        _finish(item, OutboxStatus.CANCELED.value, now, result, "Пользователь снова отключён в мессенджере")
        return None
    return base


def _call(client: CrmClient, plan: _Plan) -> int | None:
    if plan.operation == CREATE:
        new = NewCrmUser(name=plan.name, email=plan.email, password=_password(), group_id=plan.group_id)
        created = client.create_users([new])
        return created[0].id
    assert plan.crm_user_id is not None
    if plan.operation == DEACTIVATE:
        client.deactivate_users([plan.crm_user_id])
    else:
        client.activate_users([plan.crm_user_id])
    return plan.crm_user_id


def _link(db: Session, account_id: int, user_id: int, crm_user_id: int, now: datetime) -> None:
    # Source "crm": the link is news from the CRM, and the listener must not queue anything for it.
    link_crm_user(db, account_id=account_id, user_id=user_id, crm_user_id=crm_user_id, source=Source.CRM.value, now=now)


def _record(
    db: Session,
    item_id: int,
    lease_until: datetime,
    plan: _Plan,
    outcome: int | None | CrmError,
    now: datetime,
    result: DeliveryResult,
    stopped: set[int],
) -> None:
    item = db.get(CrmOutbox, item_id)
    assert item is not None
    if not isinstance(outcome, CrmError):
        if plan.operation == CREATE and outcome is not None:
            # Link even if the item was canceled meanwhile: the CRM user exists now, and the sync must not
            # import them back as somebody new.
            if find_member_by_crm_id(db, plan.account_id, outcome) is None:
                membership = db.get(Membership, plan.membership_id)
                if membership is not None and membership.crm_user_id is None:
                    _link(db, plan.account_id, plan.user_id, outcome, now)
            _mirror(db, plan, outcome, active=True, now=now)
        elif plan.crm_user_id is not None:
            _mirror(db, plan, plan.crm_user_id, active=plan.operation == ACTIVATE, now=now)
        item.crm_user_id = outcome
        item.attempts += 1
        if item.status == PENDING:
            _finish(item, OutboxStatus.DONE.value, now, result)
        return
    exc = outcome
    if item.status != PENDING or item.next_attempt_at != lease_until:
        return  # canceled or reclaimed meanwhile: its new owner decides
    item.last_error = exc.message
    item.updated_at = now
    if isinstance(exc, CrmRefused):
        _finish(item, OutboxStatus.REFUSED.value, now, result, exc.message)
        return
    if isinstance(exc, CrmAuthError | CrmBlocked):
        stopped.add(item.account_id)
        item.next_attempt_at = now + AUTH_RETRY
        connection = db.scalars(sa.select(CrmConnection).where(CrmConnection.account_id == item.account_id)).first()
        if connection is not None:
            connection.status = ConnectionStatus.ERROR.value
            connection.last_error = exc.message
        result.retried += 1
        result.errors.append(exc.message)
        return
    if isinstance(exc, CrmUnavailable):
        stopped.add(item.account_id)  # the CRM is down: the other items would only fail the same way
    item.attempts += 1
    if item.attempts >= MAX_ATTEMPTS:
        item.status = OutboxStatus.FAILED.value
        item.last_error = f"{exc.message} (попыток: {item.attempts})"
        result.failed += 1
        log.warning("CRM outbox item %s failed for good after %d attempts", item.id, item.attempts)
    else:
        item.next_attempt_at = now + backoff(item.attempts)
        result.retried += 1
    result.errors.append(exc.message)


def _mirror(db: Session, plan: _Plan, crm_user_id: int, *, active: bool, now: datetime) -> None:
    """Tell the sync's memory what we did, so its next run sees no change (and no «removed in the CRM»)."""
    row = db.scalars(
        sa.select(CrmUserState).where(
            CrmUserState.account_id == plan.account_id, CrmUserState.crm_user_id == crm_user_id
        )
    ).first()
    if row is None:
        row = CrmUserState(
            account_id=plan.account_id,
            crm_user_id=crm_user_id,
            name=plan.name[:200],
            email=plan.email or None,
            is_free=True,
            first_seen_at=now,
        )
        db.add(row)
    row.is_active = active
    row.pending_reason = None
    row.updated_at = now
    db.flush()


# ----- what the owner and support see (the owner's actions on an item: outbox_items) -----


def list_outbox(db: Session, account_id: int, statuses: Iterable[str] = OPEN, limit: int = 200) -> list[CrmOutbox]:
    return list(
        db.scalars(
            sa.select(CrmOutbox)
            .where(CrmOutbox.account_id == account_id, CrmOutbox.status.in_(list(statuses)))
            .order_by(CrmOutbox.id.desc())
            .limit(limit)
        )
    )


def list_failing(db: Session, limit: int = 200) -> list[CrmOutbox]:
    """Every account's failed and refused items, for the support console."""
    return list(
        db.scalars(
            sa.select(CrmOutbox)
            .where(CrmOutbox.status.in_([OutboxStatus.FAILED.value, OutboxStatus.REFUSED.value]))
            .order_by(CrmOutbox.updated_at.desc())
            .limit(limit)
        )
    )
