"""Connecting and disconnecting an account's CRM, and the numbers the CRM page shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy.orm import Session

from portal.accounts.models import Membership, MembershipStatus, Source, User
from portal.audit import record_audit
from portal.pagination import Key, KeysetPage
from portal.seats.members import link_crm_user
from portal.seats.models import Department
from portal.seats.queries import count_active
from portal.tasks.runs import start_run

from . import oauth
from .amocrm import AmoCrmClient, amocrm_user_name
from .base import CrmAccountInfo
from .factory import CrmSettings
from .models import (
    ConnectionStatus,
    CrmConnection,
    CrmOutbox,
    CrmSyncEntry,
    CrmSyncRun,
    CrmUserState,
    OutboxOperation,
    OutboxStatus,
)
from .oauth import MemoryTokenStore, Tokens
from .outbox import list_outbox
from .plan import BAD_PHONE, NO_PHONE, PHONE_TAKEN
from .sync import get_connection, list_entries, list_pending_page, list_removed_in_crm, list_runs
from .tasks import SYNC_RUN, SYNC_TITLES
from .tokens import clear_tokens, store_tokens


def connect_account(
    db: Session,
    *,
    account_id: int,
    actor: User | None,
    backend: str,
    base_url: str,
    subdomain: str,
    info: CrmAccountInfo,
    tokens: Tokens,
    cipher: Fernet,
    now: datetime,
) -> CrmConnection:
    """Store a fresh connection (tokens encrypted). Does not commit.

    Reconnecting the same CRM account keeps the links; a different CRM account's user ids mean nothing here, so
    every link to the old one is dropped and the next sync is a first import again.
    """
    connection = get_connection(db, account_id)
    if connection is None:
        connection = CrmConnection(account_id=account_id, created_at=now)
        db.add(connection)
    elif connection.crm_account_id is not None and connection.crm_account_id != info.id:
        _forget_links(db, account_id, now)
        connection.imported_at = None
        connection.last_sync_at = None
        connection.last_sync_status = None
    connection.backend = backend
    connection.base_url = base_url
    connection.subdomain = subdomain or info.subdomain
    connection.crm_account_id = info.id
    connection.crm_account_name = info.name[:200]
    connection.status = ConnectionStatus.CONNECTED.value
    connection.connected_at = now
    connection.connected_by_user_id = actor.id if actor is not None else None
    connection.disconnected_at = None
    connection.last_error = None
    connection.updated_at = now
    store_tokens(connection, tokens, cipher)
    db.flush()
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="crm.connected",
        after={"crm_account_id": info.id, "crm_account": info.name, "subdomain": connection.subdomain},
    )
    return connection


def connect_with_code(
    db: Session,
    *,
    account_id: int,
    actor: User,
    settings: CrmSettings,
    code: str,
    referer: str | None,
    now: datetime,
) -> tuple[CrmConnection, int | None]:
    """Finish the OAuth flow: exchange the code for tokens, read the CRM account, store the connection, and queue
    the first sync (a task: 10 000 users take longer than a page view). Returns the connection and the sync's run
    id (None when the account is not connected). Raises CrmError when the CRM refuses. Does not commit."""
    base_url, subdomain = settings.account_base_url(referer)
    tokens = oauth.exchange_code(
        oauth.token_url_for(base_url),
        settings.client_id,
        settings.client_secret,
        code,
        settings.redirect_uri,
        now=now,
    )
    with AmoCrmClient(base_url, MemoryTokenStore(tokens), credentials=settings.credentials, max_retries=2) as c:
        info = c.account_info()
    connection = connect_account(
        db,
        account_id=account_id,
        actor=actor,
        backend=settings.backend,
        base_url=base_url,
        subdomain=subdomain,
        info=info,
        tokens=tokens,
        cipher=settings.cipher,
        now=now,
    )
    return connection, start_sync(db, account_id, actor, trigger="connect")


def start_sync(db: Session, account_id: int, actor: User, *, trigger: str) -> int | None:
    """Queue a sync of this account as a task run («connect»: the first import, «manual»: the owner's button);
    None when the CRM is not connected. Does not commit (the run is sent to the queue when `db` commits)."""
    connection = get_connection(db, account_id)
    if connection is None or not connection.is_connected:
        return None
    run = start_run(
        db,
        kind=SYNC_RUN,
        title=SYNC_TITLES[trigger],
        account_id=account_id,
        user_id=actor.id,
        params={"trigger": trigger},
    )
    return run.id


def _forget_links(db: Session, account_id: int, now: datetime) -> None:
    linked = db.scalars(
        sa.select(Membership).where(Membership.account_id == account_id, Membership.crm_user_id.is_not(None))
    ).all()
    for membership in linked:
        link_crm_user(
            db, account_id=account_id, user_id=membership.user_id, crm_user_id=None, source=Source.CRM.value, now=now
        )
    db.execute(sa.delete(CrmUserState).where(CrmUserState.account_id == account_id))
    # Group ids of another CRM would rename the wrong departments: they stay, as the portal's own.
    # (The membership has no service for this one-off detach, hence the direct update, audited below.)
    detached = db.execute(
        sa.update(Department)
        .where(Department.account_id == account_id, Department.crm_group_id.is_not(None))
        .values(crm_group_id=None, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    record_audit(
        db,
        actor=None,
        account=account_id,
        action="crm.links_forgotten",
        before={"linked_users": len(linked), "crm_departments": detached},
        after={"linked_users": 0, "crm_departments": 0},
        reason="подключена другая CRM",
    )
    db.execute(
        sa.update(CrmOutbox)
        .where(CrmOutbox.account_id == account_id, CrmOutbox.status.in_(["pending", "failed", "refused"]))
        .values(status=OutboxStatus.CANCELED.value, last_error="Подключена другая CRM", updated_at=now)
        .execution_options(synchronize_session=False)
    )


def disconnect_account(db: Session, *, account_id: int, actor: User | None, now: datetime) -> CrmConnection | None:
    """Forget the tokens; links and the journal stay, so reconnecting the same CRM duplicates nobody."""
    connection = get_connection(db, account_id)
    if connection is None or connection.status == ConnectionStatus.DISCONNECTED:
        return connection
    clear_tokens(connection)
    connection.status = ConnectionStatus.DISCONNECTED.value
    connection.disconnected_at = now
    connection.updated_at = now
    db.flush()
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="crm.disconnected",
        before={"crm_account": connection.crm_account_name, "subdomain": connection.subdomain},
    )
    return connection


@dataclass(frozen=True)
class CrmOverview:
    crm_active: int
    crm_total: int
    linked_active: int
    pending_phone: int
    removed_in_crm: int
    outbox_pending: int
    outbox_problems: int
    seats_used: int


def get_overview(db: Session, account_id: int) -> CrmOverview:
    """The CRM page's counters, in a handful of aggregate queries whatever the account's size."""
    state = CrmUserState
    crm_total, crm_active, pending, removed = db.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(state.is_active.is_(True)),
            sa.func.count().filter(
                state.is_active.is_(True), state.pending_reason.in_([NO_PHONE, BAD_PHONE, PHONE_TAKEN])
            ),
            sa.func.count().filter(state.removed_in_crm_at.is_not(None)),
        ).where(state.account_id == account_id)
    ).one()
    linked_active = db.scalar(
        sa.select(sa.func.count())
        .select_from(Membership)
        .where(
            Membership.account_id == account_id,
            Membership.crm_user_id.is_not(None),
            Membership.status == MembershipStatus.ACTIVE.value,
        )
    )
    outbox = dict(
        db.execute(
            sa.select(CrmOutbox.status, sa.func.count())
            .where(CrmOutbox.account_id == account_id)
            .group_by(CrmOutbox.status)
        ).all()
    )
    return CrmOverview(
        crm_active=crm_active,
        crm_total=crm_total,
        linked_active=linked_active or 0,
        pending_phone=pending,
        removed_in_crm=removed,
        outbox_pending=outbox.get(OutboxStatus.PENDING.value, 0),
        outbox_problems=outbox.get(OutboxStatus.FAILED.value, 0) + outbox.get(OutboxStatus.REFUSED.value, 0),
        seats_used=count_active(db, account_id),
    )


@dataclass(frozen=True)
class RenamedForCrm:
    """A messenger user created in the CRM under a name the CRM's rules made shorter or plainer."""

    membership_id: int
    name: str
    crm_name: str


def list_renamed_for_crm(db: Session, account_id: int, limit: int = 100) -> list[RenamedForCrm]:
    """People the portal created in amoCRM whose name had to be cut to 50 characters or cleaned of symbols.

    Only users the portal itself created (a delivered «create» task) count; the CRM's name is what the mirror saw
    when it agrees with the cleaned name (or has not been read back yet), so a later rename by hand in the CRM is
    not reported as ours.
    """
    rows = db.execute(
        sa.select(Membership.id, User.name, CrmUserState.name)
        .select_from(CrmOutbox)
        .join(Membership, Membership.id == CrmOutbox.membership_id)
        .join(User, User.id == Membership.user_id)
        .outerjoin(
            CrmUserState,
            sa.and_(CrmUserState.account_id == CrmOutbox.account_id, CrmUserState.crm_user_id == CrmOutbox.crm_user_id),
        )
        .where(
            CrmOutbox.account_id == account_id,
            CrmOutbox.operation == OutboxOperation.CREATE_USER.value,
            CrmOutbox.status == OutboxStatus.DONE.value,
            Membership.crm_user_id == CrmOutbox.crm_user_id,
            Membership.status == MembershipStatus.ACTIVE.value,
        )
        .order_by(User.name)
    ).all()
    found: list[RenamedForCrm] = []
    for membership_id, name, seen in rows:
        crm_name = amocrm_user_name(name)
        if crm_name != name and seen in (None, name[:200], crm_name):
            found.append(RenamedForCrm(membership_id, name, crm_name))
            if len(found) >= limit:
                break
    return found


@dataclass(frozen=True)
class ConnectionPage:
    """What the owner's CRM page lists, each part a bounded query."""

    connection: CrmConnection | None
    overview: Any
    runs: list[CrmSyncRun]
    latest: CrmSyncRun | None
    latest_entries: list[CrmSyncEntry]
    outbox: list[CrmOutbox]
    outbox_members: dict[int, Membership]
    pending: KeysetPage[Any] | None
    removed: list[Any]
    renamed: list[Any]


def connection_page(
    db: Session, account_id: int, *, pending_limit: int, pending_after: Key | None, pending_before: Key | None
) -> ConnectionPage:
    connection = get_connection(db, account_id)
    runs = list_runs(db, account_id, limit=15)
    latest = runs[0] if runs else None
    outbox = list_outbox(db, account_id)
    pending = None
    if connection is not None:
        pending = list_pending_page(db, account_id, limit=pending_limit, after=pending_after, before=pending_before)
    members = {}
    if outbox:
        ids = {item.membership_id for item in outbox}
        members = {m.id: m for m in db.scalars(sa.select(Membership).where(Membership.id.in_(ids)))}
    return ConnectionPage(
        connection=connection,
        overview=get_overview(db, account_id) if connection is not None else None,
        runs=runs,
        latest=latest,
        latest_entries=list_entries(db, latest.id, limit=60) if latest is not None else [],
        outbox=outbox,
        outbox_members=members,
        pending=pending,
        removed=list_removed_in_crm(db, account_id, limit=100) if connection is not None else [],
        renamed=list_renamed_for_crm(db, account_id) if connection is not None else [],
    )
