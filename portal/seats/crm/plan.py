"""The sync planner: what to change so the membership follows the CRM by the vendor's rules; pure, no database."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import NamedTuple

from portal.accounts.phone import InvalidPhone, normalize_phone

from .base import DEFAULT_GROUP_ID, CrmGroup, CrmUser

# Why a CRM user has no user in the messenger.
NO_PHONE = "no_phone"
BAD_PHONE = "bad_phone"
PHONE_TAKEN = "phone_taken"
INACTIVE = "inactive"


# ----- the membership as the planner sees it (named tuples: a run builds one per user of the account) -----


class MemberRow(NamedTuple):
    membership_id: int
    user_id: int
    name: str
    phone: str
    email: str | None
    active: bool
    crm_user_id: int | None
    department_ids: frozenset[int] = frozenset()


class DepartmentRow(NamedTuple):
    id: int
    name: str
    crm_group_id: int | None
    active_members: int = 0


class MirrorRow(NamedTuple):
    """What the previous run saw of a CRM user."""

    crm_user_id: int
    is_active: bool
    group_id: int | None
    pending_reason: str | None = None
    removed_mark: bool = False


@dataclass(frozen=True)
class MembershipSnapshot:
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

# Actions that change the membership (KeepPending only notes why someone was not imported).
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


def display_name(user: CrmUser) -> str:
    name = " ".join(user.name.split())
    if name:
        return name[:200]
    if user.email:
        return user.email.split("@")[0][:200]
    return f"Пользователь CRM {user.id}"


def plan_sync(crm_users: Sequence[CrmUser], crm_groups: Sequence[CrmGroup], snap: MembershipSnapshot) -> SyncPlan:
    """What to change so that the membership follows the CRM by the rules; pure, so it is tested exhaustively."""
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

    # attrgetter: the key is read in C, not by a Python call per CRM user.
    for crm in sorted(crm_users, key=attrgetter("id")):
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
                reason, detail = PHONE_TAKEN, display_name(other)
        if reason is not None:
            changed = prev is None or prev.pending_reason != reason
            actions.append(KeepPending(crm, reason, detail, changed))
            mirror[crm.id] = (reason, False)
            continue
        assert phone is not None
        imported_phones[phone] = crm
        actions.append(ImportUser(crm, display_name(crm), phone))
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
