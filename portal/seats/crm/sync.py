"""Reconciliation of an account's directory with its CRM, by the vendor's published sync rules.

The run reads everything from the CRM first, then plans with a pure function (`plan_sync`) and applies the plan
through the directory service in one transaction. So a CRM answer that cannot be read stops the run before
anything is changed, and a second run over the same CRM state plans nothing.

Rules (DESIGN.md, «User sync»): a user added in the CRM is created in the messenger; a user removed in the CRM
stays active in the messenger (the link is marked); CRM groups become departments (renames followed, departments
of vanished groups kept while somebody is in them); the first connection imports every active CRM user, paid
and free. CRM users are matched by CRM id, then e-mail, then phone; nobody is duplicated.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Membership, MembershipStatus, Source, User
from portal.accounts.phone import InvalidPhone, normalize_phone
from portal.pagination import Key, KeysetPage, keyset_page
from portal.seats.bulk_add import NewUser, add_users
from portal.seats.departments import (
    create_department,
    delete_department,
    department_member_counts,
    find_department_by_crm_group,
    list_departments,
    rename_department,
)
from portal.seats.errors import DirectoryError, InvalidUserData, UserNotFound
from portal.seats.members import add_user, link_crm_user, reactivate_user, set_user_departments
from portal.seats.models import Department
from portal.seats.queries import departments_of, find_member_by_phone, list_member_departments, list_member_rows
from portal.seats.rules import clean_email, clean_phone
from portal.textinput import strip_control

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

log = logging.getLogger(__name__)

SOURCE = Source.CRM.value

# Why a CRM user has no user in the messenger.
NO_PHONE = "no_phone"
BAD_PHONE = "bad_phone"
PHONE_TAKEN = "phone_taken"
INACTIVE = "inactive"
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


# ----- the directory as the planner sees it -----


@dataclass(frozen=True)
class MemberRow:
    membership_id: int
    user_id: int
    name: str
    phone: str
    email: str | None
    active: bool
    crm_user_id: int | None
    department_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class DepartmentRow:
    id: int
    name: str
    crm_group_id: int | None
    active_members: int = 0


@dataclass(frozen=True)
class MirrorRow:
    """What the previous run saw of a CRM user."""

    crm_user_id: int
    is_active: bool
    group_id: int | None
    pending_reason: str | None = None
    removed_mark: bool = False


@dataclass(frozen=True)
class DirectorySnapshot:
    members: Sequence[MemberRow]
    departments: Sequence[DepartmentRow]
    mirror: dict[int, MirrorRow] = field(default_factory=dict)
    # Messenger removals not yet delivered to the CRM: the CRM still shows these people active, which is no
    # reason to bring them back.
    pending_deactivations: frozenset[int] = frozenset()
    first_import: bool = False


# ----- actions (the plan) -----


@dataclass(frozen=True)
class CreateDepartment:
    group_id: int
    name: str


@dataclass(frozen=True)
class RenameDepartment:
    department_id: int
    old_name: str
    new_name: str


@dataclass(frozen=True)
class DeleteDepartment:
    department_id: int
    name: str


@dataclass(frozen=True)
class ImportUser:
    crm: CrmUser
    name: str
    phone: str


@dataclass(frozen=True)
class LinkUser:
    member: MemberRow
    crm: CrmUser
    matched_by: str  # "email" | "phone"
    reactivate: bool = False


@dataclass(frozen=True)
class ReactivateUser:
    member: MemberRow
    crm: CrmUser


@dataclass(frozen=True)
class MarkRemoved:
    member: MemberRow
    crm: CrmUser
    removed: bool  # True: removed in the CRM, stays active here; False: active in the CRM again


@dataclass(frozen=True)
class MoveUser:
    member: MemberRow
    crm: CrmUser
    group_id: int | None  # the CRM group whose department the user belongs in (None: no CRM department)


@dataclass(frozen=True)
class KeepPending:
    crm: CrmUser
    reason: str
    detail: str = ""
    changed: bool = True  # False: the same reason as last time, so no new journal line


Action = (
    CreateDepartment
    | RenameDepartment
    | DeleteDepartment
    | ImportUser
    | LinkUser
    | ReactivateUser
    | MarkRemoved
    | MoveUser
    | KeepPending
)

# Actions that change the directory (KeepPending only notes why someone was not imported).
CHANGING = (CreateDepartment, RenameDepartment, DeleteDepartment, ImportUser, LinkUser, ReactivateUser, MoveUser)


@dataclass
class SyncPlan:
    actions: list[Action]
    # The mirror after the run: crm_user_id → (pending reason or None, removed mark).
    mirror: dict[int, tuple[str | None, bool]]
    inactive_skipped: int = 0
    only_in_messenger: list[MemberRow] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return sum(1 for a in self.actions if isinstance(a, CHANGING) or (isinstance(a, MarkRemoved)))


def _phone(raw: str | None) -> tuple[str | None, str | None]:
    """(E.164, None) for a usable phone, else (None, reason)."""
    if not raw or not raw.strip():
        return None, NO_PHONE
    try:
        return normalize_phone(raw), None
    except InvalidPhone:
        return None, BAD_PHONE


def _fold(email: str | None) -> str | None:
    return email.strip().casefold() if email and email.strip() else None


def _display_name(user: CrmUser) -> str:
    name = " ".join(user.name.split())
    if name:
        return name[:200]
    if user.email:
        return user.email.split("@")[0][:200]
    return f"Пользователь CRM {user.id}"


def plan_sync(crm_users: Sequence[CrmUser], crm_groups: Sequence[CrmGroup], snap: DirectorySnapshot) -> SyncPlan:
    """What to change so that the directory follows the CRM by the rules; pure, so it is tested exhaustively."""
    actions: list[Action] = []
    mirror: dict[int, tuple[str | None, bool]] = {}
    groups = {g.id: g for g in crm_groups}
    # A user without a group is in the CRM's default group (amoCRM answers null for it and lists it as id 0):
    # they belong in that group's department like everybody else.
    if DEFAULT_GROUP_ID in groups:
        crm_users = [u if u.group_id is not None else replace(u, group_id=DEFAULT_GROUP_ID) for u in crm_users]

    # Departments: one per CRM group, named as the group.
    dept_by_group = {d.crm_group_id: d for d in snap.departments if d.crm_group_id is not None}
    for group in sorted(crm_groups, key=lambda g: g.id):
        name = " ".join(group.name.split())[:200] or f"Группа CRM {group.id}"
        dept = dept_by_group.get(group.id)
        if dept is None:
            actions.append(CreateDepartment(group.id, name))
        elif dept.name != name:
            actions.append(RenameDepartment(dept.id, dept.name, name))

    members = list(snap.members)
    by_crm = {m.crm_user_id: m for m in members if m.crm_user_id is not None}
    unlinked = [m for m in members if m.crm_user_id is None]
    claimed: set[int] = set()
    by_email: dict[str, list[MemberRow]] = {}
    by_phone: dict[str, MemberRow] = {}
    for m in unlinked:
        if (key := _fold(m.email)) is not None:
            by_email.setdefault(key, []).append(m)
        by_phone[m.phone] = m
    linked_phones = {m.phone: m for m in members if m.crm_user_id is not None}
    imported_phones: dict[str, CrmUser] = {}
    # (member, crm user, active after this run) of every linked user, for the department step.
    placed: list[tuple[MemberRow, CrmUser, bool]] = []
    inactive_skipped = 0

    for crm in sorted(crm_users, key=lambda u: u.id):
        prev = snap.mirror.get(crm.id)
        member = by_crm.get(crm.id)
        if member is not None:
            claimed.add(member.membership_id)
            active = member.active
            if (
                prev is not None
                and not prev.is_active
                and crm.is_active
                and not member.active
                and member.membership_id not in snap.pending_deactivations
            ):
                actions.append(ReactivateUser(member, crm))
                active = True
            mark = bool(active and not crm.is_active)
            if mark != (prev.removed_mark if prev is not None else False):
                actions.append(MarkRemoved(member, crm, mark))
            mirror[crm.id] = (None, mark)
            placed.append((member, crm, active))
            continue

        match, matched_by = None, ""
        if (key := _fold(crm.email)) is not None:
            candidates = [m for m in by_email.get(key, []) if m.membership_id not in claimed]
            if candidates:
                match = next((m for m in candidates if m.active), candidates[0])
                matched_by = "email"
        phone, phone_problem = _phone(crm.phone)
        if match is None and phone is not None:
            candidate = by_phone.get(phone)
            if candidate is not None and candidate.membership_id not in claimed:
                match, matched_by = candidate, "phone"
        if match is not None:
            claimed.add(match.membership_id)
            reactivate = crm.is_active and not match.active and match.membership_id not in snap.pending_deactivations
            actions.append(LinkUser(match, crm, matched_by, reactivate))
            active = match.active or reactivate
            mark = bool(active and not crm.is_active)
            if mark:
                actions.append(MarkRemoved(match, crm, True))
            mirror[crm.id] = (None, mark)
            placed.append((match, crm, active))
            continue

        if not crm.is_active:
            # Only active CRM users are brought over; an inactive one is remembered so its return is noticed.
            inactive_skipped += 1
            mirror[crm.id] = (INACTIVE, False)
            continue
        reason, detail = phone_problem, ""
        if phone is not None:
            holder = linked_phones.get(phone)
            other = imported_phones.get(phone)
            if holder is not None:
                reason, detail = PHONE_TAKEN, holder.name
            elif other is not None:
                reason, detail = PHONE_TAKEN, _display_name(other)
        if reason is not None:
            changed = prev is None or prev.pending_reason != reason
            actions.append(KeepPending(crm, reason, detail, changed))
            mirror[crm.id] = (reason, False)
            continue
        assert phone is not None
        imported_phones[phone] = crm
        actions.append(ImportUser(crm, _display_name(crm), phone))
        mirror[crm.id] = (None, False)

    # Department membership follows the CRM group of every active linked user.
    crm_dept_ids = {d.id for d in snap.departments if d.crm_group_id is not None}
    dept_group = {d.id: d.crm_group_id for d in snap.departments if d.crm_group_id is not None}
    leaving: Counter[int] = Counter()
    for member, crm, active in placed:
        if not active:
            continue
        target = crm.group_id if crm.group_id in groups else None
        if crm.group_id is not None and target is None:
            continue  # a group the CRM did not list: leave the user where they are
        current = {dept_group[d] for d in member.department_ids if d in crm_dept_ids}
        wanted = set() if target is None else {target}
        if current != wanted:
            actions.append(MoveUser(member, crm, target))
            if member.active:
                for d in member.department_ids:
                    if d in crm_dept_ids and dept_group[d] != target:
                        leaving[d] += 1

    # Departments of groups gone from the CRM stay while somebody active is in them.
    for dept in snap.departments:
        if dept.crm_group_id is None or dept.crm_group_id in groups:
            continue
        if dept.active_members - leaving[dept.id] <= 0:
            actions.append(DeleteDepartment(dept.id, dept.name))

    only_here: list[MemberRow] = []
    if snap.first_import:
        only_here = [m for m in unlinked if m.active and m.membership_id not in claimed]
    return SyncPlan(actions, mirror, inactive_skipped, only_here)


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


Progress = Callable[[int, int | None, str | None], None]


def _no_progress(done: int, total: int | None, note: str | None) -> None:
    pass


class NotConnected(CrmError):
    pass


def get_connection(db: Session, account_id: int) -> CrmConnection | None:
    return db.scalars(sa.select(CrmConnection).where(CrmConnection.account_id == account_id)).first()


def _lock_connection(db: Session, connection: CrmConnection) -> None:
    """One sync of an account at a time (cron on several servers, a button pressed twice)."""
    if db.get_bind().dialect.name == "sqlite":
        db.execute(
            sa.update(CrmConnection)
            .where(CrmConnection.id == connection.id)
            .values(status=CrmConnection.status)
            .execution_options(synchronize_session=False)
        )
    db.scalars(
        sa.select(CrmConnection)
        .where(CrmConnection.id == connection.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def load_snapshot(db: Session, account_id: int, *, first_import: bool) -> DirectorySnapshot:
    """The directory, the mirror and undelivered removals, in a fixed number of queries, read as plain columns:
    a 10 000-user account is 10 000 tuples here, not 20 000 ORM objects the run never changes."""
    placed = list_member_departments(db, account_id)
    active = MembershipStatus.ACTIVE.value
    # In the team page's order: the planner takes the first of several people sharing an e-mail.
    members = [
        MemberRow(
            membership_id=mid,
            user_id=user_id,
            name=name,
            phone=phone,
            email=email,
            active=status == active,
            crm_user_id=crm_user_id,
            department_ids=frozenset(placed.get(mid, ())),
        )
        for mid, user_id, name, phone, email, status, crm_user_id in list_member_rows(db, account_id)
    ]
    counts = department_member_counts(db, account_id)
    departments = [
        DepartmentRow(d.id, d.name, d.crm_group_id, counts.get(d.id, 0)) for d in list_departments(db, account_id)
    ]
    mirror = {
        crm_user_id: MirrorRow(crm_user_id, is_active, group_id, pending_reason, removed_at is not None)
        for crm_user_id, is_active, group_id, pending_reason, removed_at in db.execute(
            sa.select(
                CrmUserState.crm_user_id,
                CrmUserState.is_active,
                CrmUserState.group_id,
                CrmUserState.pending_reason,
                CrmUserState.removed_in_crm_at,
            ).where(CrmUserState.account_id == account_id)
        )
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
    return DirectorySnapshot(members, departments, mirror, pending, first_import)


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
    """Bring the account's directory in step with its CRM; writes a journal run either way and commits.

    `progress(done, total, note)` hears how far the work is (a task run shows it); it must not touch this session.
    """
    report = progress or _no_progress
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
        crm_users = []
        # Page by page where the client can, so a 10 000-user CRM shows its progress while it is read.
        for user in getattr(client, "iter_users", client.list_users)():
            crm_users.append(_readable_user(user))
            if len(crm_users) % 250 == 0:
                report(0, None, f"прочитано пользователей CRM: {len(crm_users)}")
    except CrmError as exc:
        db.rollback()
        return _failed_run(db, account_id, now, started, trigger, actor, first_import, exc)

    # 2. Plan on a locked, fresh snapshot, then apply in this one transaction.
    try:
        connection = db.get(CrmConnection, connection.id)
        assert connection is not None
        _lock_connection(db, connection)
        snap = load_snapshot(db, account_id, first_import=first_import)
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
        applier = _Applier(db, account_id, run, now, actor, report)
        applier.apply(plan)
        applier.write_mirror(crm_users, plan, snap)
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


class _Applier:
    """Applies a plan through the directory service, writing a journal line for each change."""

    def __init__(
        self,
        db: Session,
        account_id: int,
        run: CrmSyncRun,
        now: datetime,
        actor: User | None,
        report: Progress | None = None,
    ) -> None:
        self.report = report or _no_progress
        self.db = db
        self.account_id = account_id
        self.run = run
        self.now = now
        self.actor = actor
        self.counts: Counter[str] = Counter()
        self.changes = 0
        self.dept_by_group: dict[int, int] = {}
        self.dept_names: dict[int, str] = {}
        self.membership_of: dict[int, int] = {}  # crm id → membership id, for users imported in this run
        self.link_entries: dict[int, dict[str, Any]] = {}  # membership id → its «linked» line of this run
        # The run's journal lines, in order, written with one multi-row INSERT at the end of the run (a first
        # import writes one per user); a line stays editable until then (a link's line takes its department).
        self.entries: list[dict[str, Any]] = []

    def entry(
        self, kind: str, message: str, *, subject: str = "", crm_id: int | None = None, mid: int | None = None
    ) -> dict[str, Any]:
        line = {
            "run_id": self.run.id,
            "kind": kind,
            "crm_user_id": crm_id,
            "membership_id": mid,
            "subject": subject[:200],
            "message": message,
        }
        self.entries.append(line)
        return line

    def write_journal(self) -> None:
        if self.entries:
            # render_nulls: every row the same columns, so one multi-row INSERT per batch rather than one per
            # run of rows that happen to leave the same columns empty.
            self.db.execute(sa.insert(CrmSyncEntry).execution_options(render_nulls=True), self.entries)
            self.entries = []

    def apply(self, plan: SyncPlan) -> None:
        for d in list_departments(self.db, self.account_id):
            self.dept_names[d.id] = d.name
            if d.crm_group_id is not None:
                self.dept_by_group[d.crm_group_id] = d.id
        order = (
            CreateDepartment,
            RenameDepartment,
            LinkUser,
            ImportUser,
            ReactivateUser,
            MarkRemoved,
            MoveUser,
            KeepPending,
            DeleteDepartment,
        )
        total = len(plan.actions)
        done = 0
        self.report(0, total, "применяем изменения")
        for kind in order:
            if kind is ImportUser:
                imports = [a for a in plan.actions if isinstance(a, ImportUser)]
                self._import_users(imports)
                done += len(imports)
                self.report(done, total, "применяем изменения")
                continue
            for action in plan.actions:
                if isinstance(action, kind):
                    self._one(action)
                    done += 1
                    if done % 200 == 0:
                        self.report(done, total, "применяем изменения")
        self.report(done, total, "сохраняем")

    def _one(self, action: Action) -> None:
        name = type(action).__name__
        if isinstance(action, KeepPending | MarkRemoved):
            # These only write journal lines (the mirror row is written later) and cannot fail in the directory:
            # no savepoint for them — a routine run has thousands of unchanged pending users.
            getattr(self, f"_{name}")(action)
            return
        written = len(self.entries)
        try:
            with self.db.begin_nested():
                getattr(self, f"_{name}")(action)
        except DirectoryError as exc:
            # The savepoint undid the action's rows; its journal lines go with them.
            dropped = {id(line) for line in self.entries[written:]}
            del self.entries[written:]
            self.link_entries = {k: v for k, v in self.link_entries.items() if id(v) not in dropped}
            self._failed(action, exc)

    def _failed(self, action: Action, exc: DirectoryError) -> None:
        crm = getattr(action, "crm", None)
        subject = crm.name if crm is not None else getattr(action, "name", "")
        self.counts["failed"] += 1
        self.entry(
            "user_failed",
            f"Не применено: {exc.message}",
            subject=subject,
            crm_id=crm.id if crm is not None else None,
        )

    def _import_users(self, actions: Sequence[ImportUser]) -> None:
        """Every user the CRM adds, in one pass of the directory's bulk add (a first import is thousands of them):
        the same rows, audit records and journal lines as one `add_user` each, without a savepoint per user. The
        few the bulk path leaves to `add_user` (someone the account already has) go through it one by one."""
        if not actions:
            return
        people = []
        for a in actions:
            dept_id = self.dept_by_group.get(a.crm.group_id) if a.crm.group_id is not None else None
            people.append(
                NewUser(
                    phone=a.phone,
                    name=a.name,
                    email=_clean_email_or_none(a.crm.email),
                    crm_user_id=a.crm.id,
                    department_ids=(dept_id,) if dept_id is not None else (),
                )
            )
        answers = add_users(
            self.db, account_id=self.account_id, people=people, source=SOURCE, now=self.now, actor=self.actor
        )
        for action, answer in zip(actions, answers, strict=True):
            if answer is None:
                self._one(action)
            elif isinstance(answer, DirectoryError):
                self._failed(action, answer)
            else:
                self._imported(action, answer.membership_id)

    def _dept_label(self, group_id: int | None) -> str:
        if group_id is None or group_id not in self.dept_by_group:
            return ""
        return self.dept_names.get(self.dept_by_group[group_id], "")

    def _CreateDepartment(self, a: CreateDepartment) -> None:
        dept = create_department(
            self.db,
            account_id=self.account_id,
            name=a.name,
            source=SOURCE,
            now=self.now,
            crm_group_id=a.group_id,
            actor=self.actor,
        )
        self.dept_by_group[a.group_id] = dept.id
        self.dept_names[dept.id] = dept.name
        self.counts["departments_created"] += 1
        self.changes += 1
        self.entry("department_created", "Новая группа пользователей в CRM — создан отдел", subject=a.name)

    def _RenameDepartment(self, a: RenameDepartment) -> None:
        rename_department(
            self.db,
            account_id=self.account_id,
            department_id=a.department_id,
            name=a.new_name,
            source=SOURCE,
            now=self.now,
            actor=self.actor,
        )
        self.dept_names[a.department_id] = a.new_name
        self.counts["departments_renamed"] += 1
        self.changes += 1
        self.entry(
            "department_renamed",
            f"Группа переименована в CRM — отдел «{a.old_name}» теперь называется «{a.new_name}»",
            subject=a.new_name,
        )

    def _DeleteDepartment(self, a: DeleteDepartment) -> None:
        delete_department(
            self.db,
            account_id=self.account_id,
            department_id=a.department_id,
            source=SOURCE,
            now=self.now,
            actor=self.actor,
        )
        self.counts["departments_deleted"] += 1
        self.changes += 1
        self.entry(
            "department_deleted",
            "Группы больше нет в CRM, и в отделе никого не осталось — отдел удалён",
            subject=a.name,
        )

    def _ImportUser(self, a: ImportUser) -> None:
        dept_id = self.dept_by_group.get(a.crm.group_id) if a.crm.group_id is not None else None
        result = add_user(
            self.db,
            account_id=self.account_id,
            phone=a.phone,
            name=a.name,
            source=SOURCE,
            now=self.now,
            email=_clean_email_or_none(a.crm.email),
            actor=self.actor,
            crm_user_id=a.crm.id,
            department_ids=[dept_id] if dept_id is not None else [],
        )
        self._imported(a, result.membership.id)

    def _imported(self, a: ImportUser, membership_id: int) -> None:
        self.membership_of[a.crm.id] = membership_id
        self.counts["created"] += 1
        self.changes += 1
        kind = "бесплатный" if a.crm.is_free else "платный"
        why = (
            f"Первое подключение: импортирован активный пользователь CRM ({kind})"
            if self.run.first_import
            else "Добавлен в CRM — создан в мессенджере"
        )
        dept = self._dept_label(a.crm.group_id)
        self.entry(
            "user_created",
            why + (f", отдел «{dept}»" if dept else ""),
            subject=a.name,
            crm_id=a.crm.id,
            mid=membership_id,
        )

    def _LinkUser(self, a: LinkUser) -> None:
        link_crm_user(
            self.db,
            account_id=self.account_id,
            user_id=a.member.user_id,
            crm_user_id=a.crm.id,
            source=SOURCE,
            now=self.now,
            actor=self.actor,
        )
        how = "e-mail" if a.matched_by == "email" else "телефону"
        self.counts["linked"] += 1
        self.changes += 1
        self.link_entries[a.member.membership_id] = self.entry(
            "user_linked",
            f"Уже есть в мессенджере — связан с пользователем CRM по {how}, повторно не создан",
            subject=a.member.name,
            crm_id=a.crm.id,
            mid=a.member.membership_id,
        )
        from .outbox import resolve_creates

        if resolve_creates(self.db, a.member.membership_id, a.crm.id, self.now):
            self.entry(
                "outbox_resolved",
                "Пользователь уже есть в CRM — задание «создать в CRM» закрыто без повторного создания",
                subject=a.member.name,
                crm_id=a.crm.id,
                mid=a.member.membership_id,
            )
        if a.reactivate:
            reactivate_user(
                self.db,
                account_id=self.account_id,
                user_id=a.member.user_id,
                source=SOURCE,
                now=self.now,
                actor=self.actor,
                reason="активен в CRM",
            )
            self.counts["reactivated"] += 1
            self.entry(
                "user_reactivated",
                "Активен в CRM — снова включён в мессенджере",
                subject=a.member.name,
                crm_id=a.crm.id,
                mid=a.member.membership_id,
            )

    def _ReactivateUser(self, a: ReactivateUser) -> None:
        reactivate_user(
            self.db,
            account_id=self.account_id,
            user_id=a.member.user_id,
            source=SOURCE,
            now=self.now,
            actor=self.actor,
            reason="снова включён в CRM",
        )
        self.counts["reactivated"] += 1
        self.changes += 1
        self.entry(
            "user_reactivated",
            "Снова включён в CRM — снова активен в мессенджере",
            subject=a.member.name,
            crm_id=a.crm.id,
            mid=a.member.membership_id,
        )

    def _MarkRemoved(self, a: MarkRemoved) -> None:
        # Only the mirror row changes (written in write_mirror); the messenger user keeps their seat by the rules.
        self.changes += 1
        if a.removed:
            self.counts["removed_in_crm"] += 1
            self.entry(
                "user_removed_in_crm",
                "Удалён (отключён) в CRM — в мессенджере остаётся активным по правилам синхронизации",
                subject=a.member.name,
                crm_id=a.crm.id,
                mid=a.member.membership_id,
            )
        else:
            self.entry(
                "user_back_in_crm",
                "Снова активен в CRM",
                subject=a.member.name,
                crm_id=a.crm.id,
                mid=a.member.membership_id,
            )

    def _MoveUser(self, a: MoveUser) -> None:
        current = _departments_of(self.db, a.member.membership_id)
        keep = [d.id for d in current if d.crm_group_id is None]
        target = self.dept_by_group.get(a.group_id) if a.group_id is not None else None
        new_ids = keep + ([target] if target is not None else [])
        set_user_departments(
            self.db,
            account_id=self.account_id,
            user_id=a.member.user_id,
            department_ids=new_ids,
            source=SOURCE,
            now=self.now,
            actor=self.actor,
        )
        self.changes += 1
        label = self._dept_label(a.group_id)
        had_crm_department = any(d.crm_group_id is not None for d in current)
        linked_now = self.link_entries.get(a.member.membership_id)
        if linked_now is not None and label and not had_crm_department:
            # Just linked: their CRM group is part of the same story, not a separate move.
            linked_now["message"] += f"; отдел «{label}», как группа в CRM"
            return
        self.counts["moved"] += 1
        if not label:
            text = "Группы пользователя нет в CRM — убран из отделов CRM"
        elif had_crm_department:
            text = f"Переведён в CRM в другую группу — теперь в отделе «{label}»"
        else:
            text = f"В CRM состоит в группе «{label}» — добавлен в этот отдел"
        self.entry(
            "user_moved",
            text,
            subject=a.member.name,
            crm_id=a.crm.id,
            mid=a.member.membership_id,
        )

    def _KeepPending(self, a: KeepPending) -> None:
        if not a.changed:
            return  # said in an earlier run; the CRM page lists everyone still waiting
        self.counts["pending"] += 1
        if a.reason == NO_PHONE:
            why = (
                "В CRM не указан телефон — в мессенджер не добавлен: в мессенджер входят по номеру телефона. "
                "Укажите телефон в CRM или на этой странице"
            )
        elif a.reason == BAD_PHONE:
            why = f"Телефон в CRM («{a.crm.phone}») не похож на номер — в мессенджер не добавлен. Исправьте его в CRM или укажите здесь"
        else:
            why = f"Телефон {a.crm.phone} уже у пользователя «{a.detail}» — второй раз не добавлен. Проверьте телефон в CRM"
        self.entry("user_pending", why, subject=_display_name(a.crm), crm_id=a.crm.id)

    def write_mirror(self, crm_users: Iterable[CrmUser], plan: SyncPlan, snap: DirectorySnapshot) -> None:
        """Remember what the CRM looked like; rows are written only where something differs: the new ones with
        one multi-row INSERT, the changed ones with one UPDATE by key (executemany), read as plain columns."""
        columns = ("name", "email", "phone", "is_active", "is_free", "is_admin", "group_id", "pending_reason")
        rows = {
            row.crm_user_id: row
            for row in self.db.execute(
                sa.select(
                    CrmUserState.id,
                    CrmUserState.crm_user_id,
                    CrmUserState.removed_in_crm_at,
                    *(getattr(CrmUserState, c) for c in columns),
                ).where(CrmUserState.account_id == self.account_id)
            )
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for crm in crm_users:
            reason, mark = plan.mirror.get(crm.id, (None, False))
            values: dict[str, Any] = {
                "name": crm.name[:200],
                "email": crm.email,
                "phone": crm.phone,
                "is_active": crm.is_active,
                "is_free": crm.is_free,
                "is_admin": crm.is_admin,
                "group_id": crm.group_id,
                "pending_reason": reason,
            }
            row = rows.get(crm.id)
            if row is None:
                inserts.append(
                    {
                        "account_id": self.account_id,
                        "crm_user_id": crm.id,
                        **values,
                        "removed_in_crm_at": self.now if mark else None,
                        "first_seen_at": self.now,
                        "updated_at": self.now,
                    }
                )
                continue
            removed_at = row.removed_in_crm_at
            if mark and removed_at is None:
                removed_at = self.now
            elif not mark:
                removed_at = None
            if removed_at != row.removed_in_crm_at or any(getattr(row, c) != values[c] for c in columns):
                updates.append({"id": row.id, **values, "removed_in_crm_at": removed_at, "updated_at": self.now})
        if inserts:
            self.db.execute(sa.insert(CrmUserState).execution_options(render_nulls=True), inserts)
        if updates:
            self.db.execute(sa.update(CrmUserState), updates)
        self.db.flush()

    def summarize_first_import(self, plan: SyncPlan) -> None:
        if plan.inactive_skipped:
            self.entry(
                "summary",
                f"Отключённых пользователей CRM: {plan.inactive_skipped} — не импортированы: при первом подключении "
                "переносятся только активные (платные и бесплатные)",
            )
        if plan.only_in_messenger:
            names = ", ".join(m.name for m in plan.only_in_messenger[:10])
            more = len(plan.only_in_messenger) - 10
            self.entry(
                "summary",
                f"Есть только в мессенджере: {len(plan.only_in_messenger)} — {names}"
                + (f" и ещё {more}" if more > 0 else "")
                + ". Они добавлены до подключения CRM, поэтому в CRM не создавались; "
                "новые пользователи мессенджера будут создаваться в CRM автоматически",
            )


def _departments_of(db: Session, membership_id: int) -> list[Department]:
    return departments_of(db, [membership_id])[membership_id]


def _readable_user(user: CrmUser) -> CrmUser:
    def clean(value: str | None, limit: int) -> str | None:
        return strip_control(value, max_length=limit) if isinstance(value, str) else value

    return dataclasses.replace(
        user, name=clean(user.name, 200) or "", email=clean(user.email, 254), phone=clean(user.phone, 32)
    )


def _readable_group(group: CrmGroup) -> CrmGroup:
    return dataclasses.replace(group, name=strip_control(group.name or "", max_length=200))


def _clean_email_or_none(email: str | None) -> str | None:
    try:
        return clean_email(email)
    except InvalidUserData:
        return None


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
    return list(
        db.scalars(
            sa.select(CrmUserState)
            .where(
                CrmUserState.account_id == account_id,
                CrmUserState.pending_reason.in_([NO_PHONE, BAD_PHONE, PHONE_TAKEN]),
                CrmUserState.is_active.is_(True),
            )
            .order_by(CrmUserState.name)
        )
    )


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
    if existing is not None and existing.crm_user_id is None:
        link_crm_user(
            db,
            account_id=account_id,
            user_id=existing.user_id,
            crm_user_id=crm_user_id,
            source=SOURCE,
            now=now,
            actor=actor,
        )
        if not existing.is_active:
            reactivate_user(
                db,
                account_id=account_id,
                user_id=existing.user_id,
                source=SOURCE,
                now=now,
                actor=actor,
                reason="активен в CRM",
            )
        membership = existing
    else:
        membership = add_user(
            db,
            account_id=account_id,
            phone=e164,
            name=state.name or f"Пользователь CRM {crm_user_id}",
            source=SOURCE,
            now=now,
            email=_clean_email_or_none(state.email),
            actor=actor,
            crm_user_id=crm_user_id,
            department_ids=[dept_id] if dept_id is not None else [],
        ).membership
    state.pending_reason = None
    state.updated_at = now
    db.flush()
    return membership
