"""The sync applier: carries out a plan through the membership services and writes the run's journal lines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from portal.accounts.models import Source, User
from portal.seats.bulk_add import NewUser, add_users, insert_rows
from portal.seats.departments import create_department, delete_department, list_departments, rename_department
from portal.seats.errors import InvalidUserData, MembershipError
from portal.seats.members import (
    add_user,
    link_crm_user,
    reactivate_user,
    set_many_users_departments,
    set_user_departments,
)
from portal.seats.models import Department
from portal.seats.queries import departments_of
from portal.seats.rules import clean_email

from .base import CrmUser
from .models import CrmSyncEntry, CrmSyncRun, CrmUserState
from .outbox import resolve_creates
from .plan import (
    BAD_PHONE,
    NO_PHONE,
    Action,
    CreateDepartment,
    DeleteDepartment,
    ImportUser,
    KeepPending,
    LinkUser,
    MarkRemoved,
    MoveUser,
    ReactivateUser,
    RenameDepartment,
    SyncPlan,
    display_name,
)

SOURCE = Source.CRM.value

Progress = Callable[[int, int | None, str | None], None]


def no_progress(done: int, total: int | None, note: str | None) -> None:
    pass


class Applier:
    """Applies a plan through the membership service, writing a journal line for each change."""

    def __init__(
        self,
        db: Session,
        account_id: int,
        run: CrmSyncRun,
        now: datetime,
        actor: User | None,
        report: Progress | None = None,
    ) -> None:
        self.report = report or no_progress
        self.db = db
        self.account_id = account_id
        self.run = run
        self.now = now
        self.actor = actor
        # What every change of the run tells the membership services: this account, by the CRM, now, by whom.
        self.as_crm: dict[str, Any] = {"account_id": account_id, "source": SOURCE, "now": now, "actor": actor}
        self.counts: Counter[str] = Counter()
        self.changes = 0
        self.dept_by_group: dict[int, int] = {}
        self.dept_names: dict[int, str] = {}
        self.membership_of: dict[int, int] = {}  # crm id → membership id, for users imported in this run
        self.link_entries: dict[int, dict[str, Any]] = {}  # membership id → its «linked» line of this run
        # The run's journal lines, in order, written with one multi-row INSERT at the end of the run (a first
        # import writes one per user); a line stays editable until then (a link's line takes its department).
        self.entries: list[dict[str, Any]] = []
        # Each kind of action and the rule that carries it out.
        self.rules: dict[type[Action], Callable[[Any], None]] = {
            CreateDepartment: self._create_department,
            RenameDepartment: self._rename_department,
            DeleteDepartment: self._delete_department,
            ImportUser: self._import_user,
            LinkUser: self._link_user,
            ReactivateUser: self._reactivate_user,
            MarkRemoved: self._mark_removed,
            MoveUser: self._move_user,
            KeepPending: self._keep_pending,
        }

    def tally(self, count: str | None = None, *, change: bool = False) -> None:
        """The run's bookkeeping, in one place: `count` is the summary's counter, `change` a change of the membership."""
        if count is not None:
            self.counts[count] += 1
        if change:
            self.changes += 1

    def entry(
        self,
        kind: str,
        message: str,
        *,
        subject: str = "",
        crm_id: int | None = None,
        mid: int | None = None,
        count: str | None = None,
        change: bool = False,
    ) -> dict[str, Any]:
        """A journal line of the run, tallied with `count` and `change` (see `tally`)."""
        self.tally(count, change=change)
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
            # Every line has the same keys (None where empty): one multi-row INSERT per batch.
            insert_rows(self.db, CrmSyncEntry, self.entries)
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
        by_kind: dict[type[Action], list[Action]] = {kind: [] for kind in order}
        for action in plan.actions:
            by_kind[type(action)].append(action)
        total = len(plan.actions)
        done = 0
        self.report(0, total, "применяем изменения")
        # In bulk: a first import adds thousands of users, a reshuffle of CRM groups moves as many.
        in_bulk: dict[type[Action], Callable[[Any], None]] = {
            ImportUser: self._import_users,
            MoveUser: self._move_users,
        }
        for kind in order:
            actions = by_kind[kind]
            if kind in in_bulk:
                in_bulk[kind](actions)
                done += len(actions)
                self.report(done, total, "применяем изменения")
                continue
            for action in actions:
                self._one(action)
                done += 1
                if done % 200 == 0:
                    self.report(done, total, "применяем изменения")
        self.report(done, total, "сохраняем")

    def _one(self, action: Action) -> None:
        rule = self.rules[type(action)]
        if isinstance(action, KeepPending | MarkRemoved):
            # These only write journal lines (the mirror row is written later) and cannot fail in the membership:
            # no savepoint for them — a routine run has thousands of unchanged pending users.
            rule(action)
            return
        written = len(self.entries)
        try:
            with self.db.begin_nested():
                rule(action)
        except MembershipError as exc:
            # The savepoint undid the action's rows; its journal lines go with them.
            dropped = {id(line) for line in self.entries[written:]}
            del self.entries[written:]
            self.link_entries = {k: v for k, v in self.link_entries.items() if id(v) not in dropped}
            self._failed(action, exc)

    def _failed(self, action: Action, exc: MembershipError) -> None:
        crm = getattr(action, "crm", None)
        subject = crm.name if crm is not None else getattr(action, "name", "")
        self.entry(
            "user_failed",
            f"Не применено: {exc.message}",
            subject=subject,
            crm_id=crm.id if crm is not None else None,
            count="failed",
        )

    def _import_users(self, actions: Sequence[ImportUser]) -> None:
        """Every user the CRM adds, in one pass of the membership's bulk add (a first import is thousands of them):
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
                    email=clean_email_or_none(a.crm.email),
                    crm_user_id=a.crm.id,
                    department_ids=(dept_id,) if dept_id is not None else (),
                )
            )
        answers = add_users(self.db, **self.as_crm, people=people)
        for action, answer in zip(actions, answers, strict=True):
            if answer is None:
                self._one(action)
            elif isinstance(answer, MembershipError):
                self._failed(action, answer)
            else:
                self._imported(action, answer.membership_id)

    def _dept_label(self, group_id: int | None) -> str:
        if group_id is None or group_id not in self.dept_by_group:
            return ""
        return self.dept_names.get(self.dept_by_group[group_id], "")

    def _create_department(self, a: CreateDepartment) -> None:
        dept = create_department(self.db, **self.as_crm, name=a.name, crm_group_id=a.group_id)
        self.dept_by_group[a.group_id] = dept.id
        self.dept_names[dept.id] = dept.name
        self.entry(
            "department_created",
            "Новая группа пользователей в CRM — создан отдел",
            subject=a.name,
            count="departments_created",
            change=True,
        )

    def _rename_department(self, a: RenameDepartment) -> None:
        rename_department(self.db, **self.as_crm, department_id=a.department_id, name=a.new_name)
        self.dept_names[a.department_id] = a.new_name
        self.entry(
            "department_renamed",
            f"Группа переименована в CRM — отдел «{a.old_name}» теперь называется «{a.new_name}»",
            subject=a.new_name,
            count="departments_renamed",
            change=True,
        )

    def _delete_department(self, a: DeleteDepartment) -> None:
        delete_department(self.db, **self.as_crm, department_id=a.department_id)
        self.entry(
            "department_deleted",
            "Группы больше нет в CRM, и в отделе никого не осталось — отдел удалён",
            subject=a.name,
            count="departments_deleted",
            change=True,
        )

    def _import_user(self, a: ImportUser) -> None:
        dept_id = self.dept_by_group.get(a.crm.group_id) if a.crm.group_id is not None else None
        result = add_user(
            self.db,
            **self.as_crm,
            phone=a.phone,
            name=a.name,
            email=clean_email_or_none(a.crm.email),
            crm_user_id=a.crm.id,
            department_ids=[dept_id] if dept_id is not None else [],
        )
        self._imported(a, result.membership.id)

    def _imported(self, a: ImportUser, membership_id: int) -> None:
        self.membership_of[a.crm.id] = membership_id
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
            count="created",
            change=True,
        )

    def _link_user(self, a: LinkUser) -> None:
        link_crm_user(self.db, **self.as_crm, user_id=a.member.user_id, crm_user_id=a.crm.id)
        how = "e-mail" if a.matched_by == "email" else "телефону"
        self.link_entries[a.member.membership_id] = self.entry(
            "user_linked",
            f"Уже есть в мессенджере — связан с пользователем CRM по {how}, повторно не создан",
            subject=a.member.name,
            crm_id=a.crm.id,
            mid=a.member.membership_id,
            count="linked",
            change=True,
        )
        if resolve_creates(self.db, a.member.membership_id, a.crm.id, self.now):
            self.entry(
                "outbox_resolved",
                "Пользователь уже есть в CRM — задание «создать в CRM» закрыто без повторного создания",
                subject=a.member.name,
                crm_id=a.crm.id,
                mid=a.member.membership_id,
            )
        if a.reactivate:
            self._reactivate(a, "активен в CRM", "Активен в CRM — снова включён в мессенджере", change=False)

    def _reactivate_user(self, a: ReactivateUser) -> None:
        self._reactivate(a, "снова включён в CRM", "Снова включён в CRM — снова активен в мессенджере", change=True)

    def _reactivate(self, a: LinkUser | ReactivateUser, reason: str, message: str, *, change: bool) -> None:
        """Switch the member back on; a link that reactivates counts the link as the run's change, not this."""
        reactivate_user(self.db, **self.as_crm, user_id=a.member.user_id, reason=reason)
        self.entry(
            "user_reactivated",
            message,
            subject=a.member.name,
            crm_id=a.crm.id,
            mid=a.member.membership_id,
            count="reactivated",
            change=change,
        )

    def _mark_removed(self, a: MarkRemoved) -> None:
        # Only the mirror row changes (written in write_mirror); the messenger user keeps their seat by the rules.
        self.tally(change=True)
        if a.removed:
            self.entry(
                "user_removed_in_crm",
                "Удалён (отключён) в CRM — в мессенджере остаётся активным по правилам синхронизации",
                subject=a.member.name,
                crm_id=a.crm.id,
                mid=a.member.membership_id,
                count="removed_in_crm",
            )
        else:
            self.entry(
                "user_back_in_crm",
                "Снова активен в CRM",
                subject=a.member.name,
                crm_id=a.crm.id,
                mid=a.member.membership_id,
            )

    def _move_users(self, actions: Sequence[MoveUser]) -> None:
        """Every move of the run through the membership's bulk path (one lock, a fixed number of statements, no
        savepoint per user), with the same rows and journal lines as `_move_user` one by one. If the bulk path
        refuses (some move would fail), its savepoint undoes it and the moves go one by one, as before."""
        if not actions:
            return
        current = departments_of(self.db, [a.member.membership_id for a in actions])
        wanted = {a.member.user_id: self._move_target(a, current[a.member.membership_id]) for a in actions}
        if len(wanted) == len(actions):
            try:
                with self.db.begin_nested():
                    set_many_users_departments(self.db, **self.as_crm, departments=wanted)
            except MembershipError:
                pass
            else:
                for a in actions:
                    self._moved(a, current[a.member.membership_id])
                return
        for a in actions:
            self._one(a)

    def _move_target(self, a: MoveUser, current: Sequence[Department]) -> list[int]:
        """The user's departments after the move: those of the portal's own kept, the CRM group's department."""
        keep = [d.id for d in current if d.crm_group_id is None]
        target = self.dept_by_group.get(a.group_id) if a.group_id is not None else None
        return keep + ([target] if target is not None else [])

    def _move_user(self, a: MoveUser) -> None:
        current = _departments_of(self.db, a.member.membership_id)
        new_ids = self._move_target(a, current)
        set_user_departments(self.db, **self.as_crm, user_id=a.member.user_id, department_ids=new_ids)
        self._moved(a, current)

    def _moved(self, a: MoveUser, current: Sequence[Department]) -> None:
        """The journal of a move done: a line of its own, or a note on the link of this run that placed the user."""
        self.tally(change=True)
        label = self._dept_label(a.group_id)
        had_crm_department = any(d.crm_group_id is not None for d in current)
        linked_now = self.link_entries.get(a.member.membership_id)
        if linked_now is not None and label and not had_crm_department:
            # Just linked: their CRM group is part of the same story, not a separate move.
            linked_now["message"] += f"; отдел «{label}», как группа в CRM"
            return
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
            count="moved",
        )

    def _keep_pending(self, a: KeepPending) -> None:
        if not a.changed:
            return  # said in an earlier run; the CRM page lists everyone still waiting
        if a.reason == NO_PHONE:
            why = (
                "В CRM не указан телефон — в мессенджер не добавлен: в мессенджер входят по номеру телефона. "
                "Укажите телефон в CRM или на этой странице"
            )
        elif a.reason == BAD_PHONE:
            why = f"Телефон в CRM («{a.crm.phone}») не похож на номер — в мессенджер не добавлен. Исправьте его в CRM или укажите здесь"
        else:
            why = f"Телефон {a.crm.phone} уже у пользователя «{a.detail}» — второй раз не добавлен. Проверьте телефон в CRM"
        self.entry("user_pending", why, subject=display_name(a.crm), crm_id=a.crm.id, count="pending")

    def write_mirror(self, crm_users: Iterable[CrmUser], plan: SyncPlan, stored: Mapping[int, StoredMirror]) -> None:
        """Remember what the CRM looked like; rows are written only where something differs: the new ones with
        one multi-row INSERT, the changed ones with one UPDATE by key (executemany). `stored` is the mirror read
        with the snapshot (`load_mirror`), compared as tuples."""
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        now = self.now
        no_change = (None, False)
        for crm in crm_users:
            reason, mark = plan.mirror.get(crm.id, no_change)
            values = (
                crm.name[:200],
                crm.email,
                crm.phone,
                crm.is_active,
                crm.is_free,
                crm.is_admin,
                crm.group_id,
                reason,
            )
            row = stored.get(crm.id)
            if row is None:
                inserts.append(
                    {
                        "account_id": self.account_id,
                        "crm_user_id": crm.id,
                        **dict(zip(MIRROR_COLUMNS, values, strict=True)),
                        "removed_in_crm_at": now if mark else None,
                        "first_seen_at": now,
                        "updated_at": now,
                    }
                )
                continue
            row_id, stored_removed_at, stored_values = row
            removed_at = stored_removed_at
            if mark and removed_at is None:
                removed_at = now
            elif not mark:
                removed_at = None
            if removed_at != stored_removed_at or values != stored_values:
                updates.append(
                    {
                        "id": row_id,
                        **dict(zip(MIRROR_COLUMNS, values, strict=True)),
                        "removed_in_crm_at": removed_at,
                        "updated_at": now,
                    }
                )
        if inserts:
            self._insert_mirror(inserts)
        if updates:
            self.db.execute(sa.update(CrmUserState), updates)
        self.db.flush()

    def _insert_mirror(self, rows: list[dict[str, Any]]) -> None:
        """New mirror rows; one an outbox delivery committed since the snapshot was read (it remembers the CRM users
        it creates without the connection's lock) takes what the CRM says now instead of failing the run."""
        table = CrmUserState.__table__
        dialect = self.db.get_bind().dialect.name
        statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        follow = (*MIRROR_COLUMNS, "removed_in_crm_at", "updated_at")
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.account_id, table.c.crm_user_id],
            set_={column: statement.excluded[column] for column in follow},
        )
        self.db.flush()
        self.db.connection().execute(statement, rows)

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


# The mirror's columns that follow the CRM, in the order `write_mirror` compares them.
MIRROR_COLUMNS = ("name", "email", "phone", "is_active", "is_free", "is_admin", "group_id", "pending_reason")

# One stored mirror row: (row id, removed_in_crm_at, the MIRROR_COLUMNS' values).
StoredMirror = tuple[int, datetime | None, tuple[Any, ...]]


def load_mirror(db: Session, account_id: int) -> dict[int, StoredMirror]:
    """The account's mirror as plain tuples by CRM user id, read once per run for the plan and `write_mirror`
    (through Core: the ORM's row loading costs as much again for 10 000 rows of columns). The rows are fetched at
    once (`all()`: one DB-API fetchall instead of a fetchone per row) and sliced rather than unpacked."""
    db.flush()
    rows = (
        db.connection()
        .execute(
            sa.select(
                CrmUserState.crm_user_id,
                CrmUserState.id,
                CrmUserState.removed_in_crm_at,
                *(getattr(CrmUserState, c) for c in MIRROR_COLUMNS),
            ).where(CrmUserState.account_id == account_id)
        )
        .all()
    )
    return {row[0]: (row[1], row[2], tuple(row[3:])) for row in rows}


def _departments_of(db: Session, membership_id: int) -> list[Department]:
    return departments_of(db, [membership_id])[membership_id]


def clean_email_or_none(email: str | None) -> str | None:
    try:
        return clean_email(email)
    except InvalidUserData:
        return None
