"""Reconciliation of an account's membership with its CRM, by the vendor's published sync rules.

The run reads everything from the CRM first, then plans with a pure function (`plan.plan_sync`) and applies the
plan (`apply.Applier`) through the membership services in one transaction. So a CRM answer that cannot be read stops the run before
anything is changed, and a second run over the same CRM state plans nothing.

Rules (DESIGN.md, «User sync»): a user added in the CRM is created in the messenger; a user removed in the CRM
stays active in the messenger (the link is marked); CRM groups become departments (renames followed, departments
of vanished groups kept while somebody is in them); the first connection imports every active CRM user, paid
and free. CRM users are matched by CRM id, then e-mail, then phone; nobody is duplicated.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Membership, MembershipStatus, User
from portal.pagination import Key, KeysetPage, keyset_page
from portal.seats.departments import (
    department_member_counts,
    find_department_by_crm_group,
    list_departments,
)
from portal.seats.errors import UserNotFound
from portal.seats.members import add_user, link_crm_user, reactivate_user
from portal.seats.queries import find_member_by_phone, list_member_departments, list_member_rows
from portal.seats.rules import clean_phone
from portal.textinput import strip_control

from .apply import SOURCE, Applier, Progress, StoredMirror, clean_email_or_none, load_mirror, no_progress
from .base import (
    DEFAULT_GROUP_ID,
    CrmAuthError,
    CrmBadResponse,
    CrmBlocked,
    CrmClient,
    CrmError,
    CrmGroup,
    CrmUser,
)
from .models import ConnectionStatus, CrmConnection, CrmOutbox, CrmSyncEntry, CrmSyncRun, CrmUserState, OutboxStatus
from .plan import (
    BAD_PHONE,
    INACTIVE,
    NO_PHONE,
    PHONE_TAKEN,
    DepartmentRow,
    MemberRow,
    MembershipSnapshot,
    MirrorRow,
    plan_sync,
)
from .tokens import lock_connection

log = logging.getLogger(__name__)

# Why a CRM user has no user in the messenger, as the CRM page says it.
PENDING_REASONS = {
    NO_PHONE: "нет телефона в CRM",
    BAD_PHONE: "телефон в CRM не распознан",
    PHONE_TAKEN: "телефон уже у другого пользователя",
    INACTIVE: "отключён в CRM",
}

# Journal line kinds, and how the page titles them.
ENTRY_TITLES = {
    "user_created": "Создан в мессенджере",
    "user_linked": "Связан",
    "user_reactivated": "Снова активен",
    "user_removed_in_crm": "Удалён в CRM",
    "user_back_in_crm": "Снова в CRM",
    "user_moved": "Сменил отдел",
    "user_pending": "Не добавлен",
    "user_failed": "Ошибка",
    "department_created": "Новый отдел",
    "department_renamed": "Отдел переименован",
    "department_deleted": "Отдел удалён",
    "outbox_resolved": "Уже в CRM",
    "summary": "Итог",
    "error": "Остановлено",
}


# ----- running it against the database -----


@dataclass
class SyncResult:
    run_id: int
    ok: bool
    changes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    first_import: bool = False

    @property
    def message(self) -> str:
        """A one-line outcome for a flash message or the CLI."""
        if not self.ok:
            return f"Синхронизация не выполнена: {self.error}"
        if not self.changes:
            return "Синхронизация выполнена: изменений нет."
        parts = [f"{label}: {self.counts[key]}" for key, label in COUNT_LABELS if self.counts.get(key)]
        summary = "; ".join(parts)
        return f"Синхронизация выполнена. {summary[:1].upper()}{summary[1:]}."


COUNT_LABELS = (
    ("created", "создано пользователей"),
    ("linked", "связано"),
    ("reactivated", "снова активны"),
    ("removed_in_crm", "удалены в CRM (остаются активны)"),
    ("moved", "сменили отдел"),
    ("departments_created", "новых отделов"),
    ("departments_renamed", "переименовано отделов"),
    ("departments_deleted", "удалено отделов"),
    ("pending", "не добавлены"),
    ("failed", "ошибок"),
)


class NotConnected(CrmError):
    pass


def get_connection(db: Session, account_id: int) -> CrmConnection | None:
    return db.scalars(sa.select(CrmConnection).where(CrmConnection.account_id == account_id)).first()


def load_snapshot(
    db: Session, account_id: int, *, first_import: bool, stored: Mapping[int, StoredMirror] | None = None
) -> MembershipSnapshot:
    """The membership, the mirror and undelivered removals, in a fixed number of queries, read as plain columns:
    a 10 000-user account is 10 000 tuples here, not 20 000 ORM objects the run never changes. `stored` is the
    mirror the caller has already read (`load_mirror`)."""
    if stored is None:
        stored = load_mirror(db, account_id)
    placed = list_member_departments(db, account_id)
    active = MembershipStatus.ACTIVE.value
    # In the team page's order: the planner takes the first of several people sharing an e-mail.
    members = [
        MemberRow(mid, user_id, name, phone, email, status == active, crm_user_id, frozenset(placed.get(mid, ())))
        for mid, user_id, name, phone, email, status, crm_user_id in list_member_rows(db, account_id)
    ]
    counts = department_member_counts(db, account_id)
    departments = [
        DepartmentRow(d.id, d.name, d.crm_group_id, counts.get(d.id, 0)) for d in list_departments(db, account_id)
    ]
    # The plan's view of the mirror: is_active, group_id and pending_reason (see apply.MIRROR_COLUMNS).
    mirror = {
        crm_user_id: MirrorRow(crm_user_id, values[3], values[6], values[7], removed_at is not None)
        for crm_user_id, (_, removed_at, values) in stored.items()
    }
    pending = frozenset(
        db.scalars(
            sa.select(CrmOutbox.membership_id).where(
                CrmOutbox.account_id == account_id,
                CrmOutbox.operation == "deactivate_user",
                CrmOutbox.status == OutboxStatus.PENDING.value,
            )
        )
    )
    return MembershipSnapshot(members, departments, mirror, pending, first_import)


def sync_account(
    db: Session,
    account_id: int,
    client: CrmClient,
    now: datetime,
    *,
    trigger: str = "cron",
    actor: User | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Bring the account's membership in step with its CRM; writes a journal run either way and commits.

    `progress(done, total, note)` hears how far the work is (a task run shows it); it must not touch this session.
    """
    with _cycle_collector_paused():
        return _sync_account(db, account_id, client, now, trigger, actor, progress or no_progress)


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Python's cycle collector off for one run. A run makes ~10 short-lived containers per CRM user (the JSON
    pages) and keeps a few per user (the users, the snapshot): the allocations set off full collections, each
    walking the whole process's heap (0.1–0.2 s with the app loaded) to find no garbage — a run's data has no
    cycles. Switched back on afterwards only by the run that switched it off, so overlapping runs in threads
    leave it on; the collector then catches up on its next threshold."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _sync_account(
    db: Session,
    account_id: int,
    client: CrmClient,
    now: datetime,
    trigger: str,
    actor: User | None,
    report: Progress,
) -> SyncResult:
    started = time.monotonic()
    connection = get_connection(db, account_id)
    if connection is None or not connection.is_connected:
        raise NotConnected("CRM не подключена")
    first_import = connection.imported_at is None

    # 1. Read everything. Nothing is written until the CRM has answered every request in full.
    try:
        # The CRM's text is someone else's: what the portal cannot store or print is blanked out on the way in.
        report(0, None, "читаем пользователей CRM")
        groups = [_readable_group(g) for g in client.list_groups()]
        crm_users: list[CrmUser] = []
        read = crm_users.append  # bound once: this loop runs once per CRM user
        # Page by page where the client can, so a 10 000-user CRM shows its progress while it is read.
        for count, user in enumerate(getattr(client, "iter_users", client.list_users)(), 1):
            read(_readable_user(user))
            if count % 250 == 0:
                report(0, None, f"прочитано пользователей CRM: {count}")
    except CrmError as exc:
        db.rollback()
        return _failed_run(db, account_id, now, started, trigger, actor, first_import, exc)

    # 2. Plan on a locked, fresh snapshot, then apply in this one transaction.
    try:
        connection = db.get(CrmConnection, connection.id)
        assert connection is not None
        if lock_connection(db, connection.id) is None:
            raise NotConnected("CRM не подключена")
        stored = load_mirror(db, account_id)
        snap = load_snapshot(db, account_id, first_import=first_import, stored=stored)
        plan = plan_sync(crm_users, groups, snap)
        run = CrmSyncRun(
            account_id=account_id,
            trigger=trigger,
            actor_user_id=actor.id if actor else None,
            started_at=now,
            status="ok",
            first_import=first_import,
            crm_users=len(crm_users),
        )
        db.add(run)
        db.flush()
        applier = Applier(db, account_id, run, now, actor, report)
        applier.apply(plan)
        applier.write_mirror(crm_users, plan, stored)
        if first_import:
            applier.summarize_first_import(plan)
        applier.write_journal()
        run.counts = dict(applier.counts)
        run.changes = applier.changes
        run.finished_at = now + timedelta(seconds=time.monotonic() - started)
        connection.last_sync_at = now
        connection.last_sync_status = "ok"
        connection.last_error = None
        if connection.status == ConnectionStatus.ERROR:
            connection.status = ConnectionStatus.CONNECTED.value
        if first_import:
            connection.imported_at = now
        db.commit()
    except Exception:
        db.rollback()
        log.exception("CRM sync of account %s failed while applying", account_id)
        error = CrmError("внутренняя ошибка портала при применении изменений; ничего не изменено")
        return _failed_run(db, account_id, now, started, trigger, actor, first_import, error)
    log.info("CRM sync of account %s: %d changes", account_id, run.changes)
    return SyncResult(run.id, True, run.changes, dict(applier.counts), None, first_import)


def _failed_run(
    db: Session,
    account_id: int,
    now: datetime,
    started: float,
    trigger: str,
    actor: User | None,
    first_import: bool,
    exc: CrmError,
) -> SyncResult:
    message = exc.message
    if isinstance(exc, CrmBadResponse):
        message = f"{exc.message}. Синхронизация остановлена до изменений: в мессенджере ничего не изменено"
    run = CrmSyncRun(
        account_id=account_id,
        trigger=trigger,
        actor_user_id=actor.id if actor else None,
        started_at=now,
        finished_at=now + timedelta(seconds=time.monotonic() - started),
        status="failed",
        first_import=first_import,
        counts={},
        error=message,
    )
    db.add(run)
    db.flush()
    db.add(CrmSyncEntry(run_id=run.id, kind="error", subject="", message=message))
    connection = get_connection(db, account_id)
    if connection is not None:
        connection.last_sync_at = now
        connection.last_sync_status = "failed"
        connection.last_error = message
        if isinstance(exc, CrmAuthError | CrmBlocked):
            connection.status = ConnectionStatus.ERROR.value
    db.commit()
    log.warning("CRM sync of account %s failed: %s", account_id, message)
    return SyncResult(run.id, False, 0, {}, message, first_import)


def _readable(value: str | None, limit: int) -> str | None:
    """`strip_control` for one CRM field. `isprintable()` is False for every character it replaces (C0/C1 controls,
    U+2028, U+2029), so a printable value within the limit — nearly every one — is already clean as it is."""
    if not isinstance(value, str) or (len(value) <= limit and value.isprintable()):
        return value
    return strip_control(value, max_length=limit)


def _readable_user(user: CrmUser) -> CrmUser:
    name, email, phone = user.name, user.email, user.phone
    # Nearly every user: all three already clean (see `_readable`), checked in one expression.
    if (
        type(name) is str
        and len(name) <= 200
        and name.isprintable()
        and (email is None or (len(email) <= 254 and email.isprintable()))
        and (phone is None or (len(phone) <= 32 and phone.isprintable()))
    ):
        return user
    name = _readable(user.name, 200) or ""
    email = _readable(user.email, 254)
    phone = _readable(user.phone, 32)
    if name is user.name and email is user.email and phone is user.phone:
        return user  # nothing to blank out: the same user, without a copy per CRM user of every run
    return dataclasses.replace(user, name=name, email=email, phone=phone)


def _readable_group(group: CrmGroup) -> CrmGroup:
    return dataclasses.replace(group, name=strip_control(group.name or "", max_length=200))


def list_runs(db: Session, account_id: int, limit: int = 20) -> list[CrmSyncRun]:
    return list(
        db.scalars(
            sa.select(CrmSyncRun)
            .where(CrmSyncRun.account_id == account_id)
            .order_by(CrmSyncRun.started_at.desc(), CrmSyncRun.id.desc())
            .limit(limit)
        )
    )


def get_run(db: Session, account_id: int, run_id: int) -> CrmSyncRun | None:
    return db.scalars(sa.select(CrmSyncRun).where(CrmSyncRun.account_id == account_id, CrmSyncRun.id == run_id)).first()


def list_entries(db: Session, run_id: int, limit: int | None = None) -> list[CrmSyncEntry]:
    q = sa.select(CrmSyncEntry).where(CrmSyncEntry.run_id == run_id).order_by(CrmSyncEntry.id)
    return list(db.scalars(q if limit is None else q.limit(limit)))


ENTRY_KEY_TYPES = (int,)
PENDING_KEY_TYPES = (str, int)


def list_entries_page(
    db: Session, run_id: int, *, limit: int = 200, after: Key | None = None, before: Key | None = None
) -> KeysetPage[CrmSyncEntry]:
    """A page of a run's journal in the order it was written, read from ix_crm_sync_entries_run_id_id."""
    return keyset_page(
        db,
        sa.select(CrmSyncEntry).where(CrmSyncEntry.run_id == run_id),
        [CrmSyncEntry.id],
        lambda entry: (entry.id,),
        limit=limit,
        after=after,
        before=before,
        descending=False,
    )


def list_pending_page(
    db: Session, account_id: int, *, limit: int = 50, after: Key | None = None, before: Key | None = None
) -> KeysetPage[CrmUserState]:
    """A page of list_pending_crm_users, by name, read from ix_crm_users_account_name_id from the key on."""
    return keyset_page(
        db,
        _pending_query(account_id),
        [CrmUserState.name, CrmUserState.id],
        lambda state: (state.name, state.id),
        limit=limit,
        after=after,
        before=before,
        descending=False,
    )


def _pending_query(account_id: int) -> sa.Select[Any]:
    return sa.select(CrmUserState).where(
        CrmUserState.account_id == account_id,
        CrmUserState.pending_reason.in_([NO_PHONE, BAD_PHONE, PHONE_TAKEN]),
        CrmUserState.is_active.is_(True),
    )


def list_pending_crm_users(db: Session, account_id: int) -> list[CrmUserState]:
    """Active CRM users the messenger could not take in (no or duplicate phone), for the owner to fix."""
    return list(db.scalars(_pending_query(account_id).order_by(CrmUserState.name)))


def list_removed_in_crm(
    db: Session, account_id: int, limit: int | None = None
) -> list[tuple[CrmUserState, Membership]]:
    """Links marked «удалён в CRM»: the people keep their seat in the messenger by the rules."""
    rows = db.execute(
        sa.select(CrmUserState, Membership)
        .join(
            Membership,
            sa.and_(
                Membership.account_id == CrmUserState.account_id,
                Membership.crm_user_id == CrmUserState.crm_user_id,
            ),
        )
        .where(
            CrmUserState.account_id == account_id,
            CrmUserState.removed_in_crm_at.is_not(None),
            Membership.status == MembershipStatus.ACTIVE.value,
        )
        .order_by(CrmUserState.name)
        .limit(limit)
    ).all()
    return [(state, membership) for state, membership in rows]


def import_pending_user(
    db: Session, account_id: int, crm_user_id: int, phone: str, now: datetime, actor: User | None
) -> Membership:
    """The owner supplies the phone a CRM user lacked: the user is added as the sync would have. Does not commit."""
    state = db.scalars(
        sa.select(CrmUserState).where(CrmUserState.account_id == account_id, CrmUserState.crm_user_id == crm_user_id)
    ).first()
    if state is None or state.pending_reason not in (NO_PHONE, BAD_PHONE, PHONE_TAKEN):
        raise UserNotFound("Этот пользователь CRM уже добавлен или не найден.")
    group_id = state.group_id if state.group_id is not None else DEFAULT_GROUP_ID
    dept = find_department_by_crm_group(db, account_id, group_id)
    dept_id = dept.id if dept is not None else None
    e164 = clean_phone(phone)
    existing = find_member_by_phone(db, account_id, e164)
    # What each membership service hears: this account, by the CRM, now, by whom (as the sync's Applier.as_crm).
    as_crm: dict[str, Any] = {"account_id": account_id, "source": SOURCE, "now": now, "actor": actor}
    if existing is not None and existing.crm_user_id is None:
        link_crm_user(db, **as_crm, user_id=existing.user_id, crm_user_id=crm_user_id)
        if not existing.is_active:
            reactivate_user(db, **as_crm, user_id=existing.user_id, reason="активен в CRM")
        membership = existing
    else:
        membership = add_user(
            db,
            **as_crm,
            phone=e164,
            name=state.name or f"Пользователь CRM {crm_user_id}",
            email=clean_email_or_none(state.email),
            crm_user_id=crm_user_id,
            department_ids=[dept_id] if dept_id is not None else [],
        ).membership
    state.pending_reason = None
    state.updated_at = now
    db.flush()
    return membership
