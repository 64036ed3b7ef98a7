"""The account's membership: adding, deactivating, reactivating people, their roles, departments and CRM link.

The team page, the messenger API and the CRM sync all go through here, so the rules (one membership per person,
at least one active owner, valid phones) hold whoever makes the change. Every change is audited and announced to
the membership listeners in the same transaction. The functions flush but never commit: the caller commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Membership, MembershipStatus, Role, Source, User
from portal.accounts.phone import format_phone
from portal.seats.errors import DuplicateUser, LastOwnerError, UserNotActive, UserNotFound
from portal.seats.events import EventKind, MembershipEvent, emit
from portal.seats.models import MembershipDepartment
from portal.seats.queries import (
    count_active_owners,
    find_member_by_crm_id,
    find_member_by_phone,
    get_member,
    snapshot,
)
from portal.seats.rules import (
    IN_CHUNK,
    added_record,
    audit_change,
    check_departments,
    clean_crm_id,
    clean_email,
    clean_name,
    clean_phone,
    clean_role,
    clean_source,
    is_id,
    lock_account,
)


def _event(
    db: Session,
    kind: EventKind,
    membership: Membership,
    *,
    source: Source,
    actor: User | None,
    now: datetime,
    changes: dict[str, Any],
    department_ids: Sequence[int] | None = None,
) -> MembershipEvent:
    event = MembershipEvent(
        kind=kind,
        account_id=membership.account_id,
        user=snapshot(db, membership, department_ids),
        source=source.value,
        actor_user_id=actor.id if actor is not None else None,
        at=now,
        changes=changes,
    )
    emit(db, event)
    return event


def _record_change(
    db: Session,
    membership: Membership,
    kind: EventKind,
    *,
    action: str,
    field: str,
    before: Any,
    after: Any,
    source: Source,
    actor: User | None,
    now: datetime,
    reason: str | None = None,
    department_ids: Sequence[int] | None = None,
) -> MembershipEvent:
    """The end of every change of one membership: stamp it, flush, audit `field` before → after, tell the listeners."""
    membership.updated_at = now
    db.flush()
    audit_change(
        db,
        actor=actor,
        account_id=membership.account_id,
        action=action,
        source=source,
        before={"user_id": membership.user_id, field: before},
        after={"user_id": membership.user_id, field: after},
        reason=reason,
    )
    return _event(
        db,
        kind,
        membership,
        source=source,
        actor=actor,
        now=now,
        changes={field: [before, after]},
        department_ids=department_ids,
    )


def _ensure_owner_remains(db: Session, membership: Membership) -> None:
    if membership.role == Role.OWNER and membership.is_active and count_active_owners(db, membership.account_id) <= 1:
        raise LastOwnerError()


@dataclass(frozen=True)
class AddResult:
    membership: Membership
    created: bool  # False: the person was in the account, deactivated, and is active again
    events: tuple[MembershipEvent, ...]


def add_user(
    db: Session,
    *,
    account_id: int,
    phone: str,
    name: str,
    source: str,
    now: datetime,
    role: str = Role.MEMBER.value,
    email: str | None = None,
    actor: User | None = None,
    crm_user_id: int | None = None,
    department_ids: Sequence[int] = (),
) -> AddResult:
    """Add a person to the account as an active user (a seat). Adding beyond the plan is allowed.

    The phone identifies the person across accounts, but the name and e-mail given here are this company's record
    of them (Membership); the person's own profile is neither read nor changed, so a company learns nothing of what
    the person or another company wrote. A person new to the portal gets these as the start of their profile. A
    person who was in the account and deactivated, or left, becomes active again (created=False), with the given
    role. An active duplicate raises DuplicateUser. Does not commit.
    """
    src = clean_source(source)
    e164 = clean_phone(phone)
    clean = clean_name(name)
    mail = clean_email(email)
    new_role = clean_role(role)
    crm_id = clean_crm_id(crm_user_id)
    lock_account(db, account_id)
    dept_ids = check_departments(db, account_id, department_ids)

    existing = find_member_by_phone(db, account_id, e164)
    if existing is not None and existing.is_active:
        raise DuplicateUser(
            f"Пользователь с телефоном {_display_phone(e164)} уже есть в компании: {existing.name}.",
            field="phone",
        )
    if crm_id is not None:
        linked = find_member_by_crm_id(db, account_id, crm_id)
        if linked is not None and linked is not existing:
            raise DuplicateUser(
                f"Пользователь CRM {crm_id} уже связан с пользователем {linked.name}.", field="crm_user_id"
            )

    with db.begin_nested():
        if existing is not None:
            if existing.status == MembershipStatus.LEFT:
                existing.seen_at = None  # they left; coming back is the person's choice again
            events = [
                _reactivate(db, existing, source=src, actor=actor, now=now, reason="добавлен повторно"),
            ]
            if existing.role != new_role:
                events.append(_change_role(db, existing, new_role, source=src, actor=actor, now=now))
            if crm_id is not None and existing.crm_user_id != crm_id:
                events.append(_link_crm(db, existing, crm_id, source=src, actor=actor, now=now))
            if mail and not existing.email:
                existing.email = mail
            if dept_ids:
                events.append(_set_departments(db, existing, dept_ids, source=src, actor=actor, now=now))
            db.flush()
            return AddResult(existing, created=False, events=tuple(events))

        user = db.scalars(sa.select(User).where(User.phone == e164)).first()
        if user is None:
            user = User(phone=e164, name=clean, email=mail, created_at=now)
            db.add(user)
            try:
                with db.begin_nested():
                    db.flush()
            except sa.exc.IntegrityError:
                # Someone added the same person elsewhere a moment ago: their row is the person.
                user = db.scalars(sa.select(User).where(User.phone == e164)).one()
        membership = Membership(
            account_id=account_id,
            user_id=user.id,
            role=new_role.value,
            status=MembershipStatus.ACTIVE.value,
            source=src.value,
            crm_user_id=crm_id,
            name=clean,
            email=mail,
            created_at=now,
            updated_at=now,
        )
        db.add(membership)
        db.flush()
        for dept_id in dept_ids:
            db.add(MembershipDepartment(membership_id=membership.id, department_id=dept_id))
        db.flush()
        after = added_record(
            user_id=user.id, phone=user.phone, name=clean, role=new_role, source=src, crm_id=crm_id, dept_ids=dept_ids
        )
        audit_change(
            db, actor=actor, account_id=account_id, action="seats.user_added", source=src, before=None, after=after
        )
        event = _event(
            db, EventKind.ADDED, membership, source=src, actor=actor, now=now, changes={}, department_ids=dept_ids
        )
        return AddResult(membership, created=True, events=(event,))


def deactivate_user(
    db: Session,
    *,
    account_id: int,
    user_id: int,
    source: str,
    now: datetime,
    actor: User | None = None,
    reason: str | None = None,
) -> Membership:
    """Free the user's seat; they keep their history and can be reactivated. Idempotent. Does not commit.

    The last active owner cannot be deactivated (LastOwnerError).
    """
    return _free_seat(
        db,
        account_id,
        user_id,
        status=MembershipStatus.DEACTIVATED,
        action="seats.user_deactivated",
        source=clean_source(source),
        actor=actor,
        now=now,
        reason=reason,
    )


def locked_member(db: Session, account_id: int, user_id: int) -> Membership:
    """The membership to change, its account locked first: one account's membership changes queue here, so the
    checks that follow (the last owner, the seat limit) see every change committed before."""
    lock_account(db, account_id)
    return get_member(db, account_id, user_id)


def _free_seat(
    db: Session,
    account_id: int,
    user_id: int,
    *,
    status: MembershipStatus,
    action: str,
    source: Source,
    actor: User | None,
    now: datetime,
    reason: str | None = None,
) -> Membership:
    """An active user stops taking a seat (deactivated by the company, or left themselves): the event is
    DEACTIVATED either way; the last active owner keeps theirs (LastOwnerError). Idempotent. Does not commit."""
    membership = locked_member(db, account_id, user_id)
    if not membership.is_active:
        return membership
    _ensure_owner_remains(db, membership)
    with db.begin_nested():
        membership.status = status.value
        _record_change(
            db,
            membership,
            EventKind.DEACTIVATED,
            action=action,
            field="status",
            before=MembershipStatus.ACTIVE.value,
            after=status.value,
            source=source,
            actor=actor,
            now=now,
            reason=reason,
        )
    return membership


def _reactivate(
    db: Session, membership: Membership, *, source: Source, actor: User | None, now: datetime, reason: str | None
) -> MembershipEvent:
    membership.status = MembershipStatus.ACTIVE.value
    # Audited as a comeback from deactivation, also for a person who left and is added again (as it always was).
    return _record_change(
        db,
        membership,
        EventKind.REACTIVATED,
        action="seats.user_reactivated",
        field="status",
        before=MembershipStatus.DEACTIVATED.value,
        after=MembershipStatus.ACTIVE.value,
        source=source,
        actor=actor,
        now=now,
        reason=reason,
    )


def reactivate_user(
    db: Session,
    *,
    account_id: int,
    user_id: int,
    source: str,
    now: datetime,
    actor: User | None = None,
    reason: str | None = None,
) -> Membership:
    """Give a deactivated user their seat back (allowed beyond the plan). Idempotent. Does not commit."""
    src = clean_source(source)
    membership = locked_member(db, account_id, user_id)
    if membership.is_active:
        return membership
    if membership.status == MembershipStatus.LEFT:
        raise UserNotActive("Пользователь сам покинул компанию: вернуть его можно, только добавив снова по телефону.")
    with db.begin_nested():
        _reactivate(db, membership, source=src, actor=actor, now=now, reason=reason)
    return membership


def leave_account(db: Session, *, account_id: int, user: User, now: datetime) -> Membership:
    """The person leaves a company (one that added them, say): the seat is freed and the company sees them as left.
    The last active owner cannot leave (LastOwnerError). Idempotent. Does not commit."""
    return _free_seat(
        db,
        account_id,
        user.id,
        status=MembershipStatus.LEFT,
        action="seats.user_left",
        source=Source.PORTAL,
        actor=user,
        now=now,
    )


def _change_role(
    db: Session, membership: Membership, role: Role, *, source: Source, actor: User | None, now: datetime
) -> MembershipEvent:
    before = membership.role
    membership.role = role.value
    return _record_change(
        db,
        membership,
        EventKind.ROLE_CHANGED,
        action="seats.role_changed",
        field="role",
        before=before,
        after=role.value,
        source=source,
        actor=actor,
        now=now,
    )


def change_role(
    db: Session,
    *,
    account_id: int,
    user_id: int,
    role: str,
    source: str,
    now: datetime,
    actor: User | None = None,
) -> Membership:
    """Make an active user owner, accountant or member; the last active owner keeps the role. Does not commit."""
    src = clean_source(source)
    new_role = clean_role(role)
    membership = locked_member(db, account_id, user_id)
    if membership.role == new_role:
        return membership
    if not membership.is_active:
        raise UserNotActive("Пользователь отключён: сначала включите его, затем меняйте роль.")
    _ensure_owner_remains(db, membership)
    with db.begin_nested():
        _change_role(db, membership, new_role, source=src, actor=actor, now=now)
    return membership


def _department_ids(db: Session, membership: Membership) -> list[int]:
    return sorted(
        db.scalars(
            sa.select(MembershipDepartment.department_id).where(MembershipDepartment.membership_id == membership.id)
        )
    )


def _set_departments(
    db: Session,
    membership: Membership,
    dept_ids: list[int],
    *,
    source: Source,
    actor: User | None,
    now: datetime,
    before: list[int] | None = None,
) -> MembershipEvent:
    if before is None:
        before = _department_ids(db, membership)
    db.execute(
        sa.delete(MembershipDepartment)
        .where(MembershipDepartment.membership_id == membership.id)
        .execution_options(synchronize_session=False)
    )
    for dept_id in dept_ids:
        db.add(MembershipDepartment(membership_id=membership.id, department_id=dept_id))
    return _record_change(
        db,
        membership,
        EventKind.DEPARTMENTS_CHANGED,
        action="seats.departments_changed",
        field="department_ids",
        before=before,
        after=dept_ids,
        source=source,
        actor=actor,
        now=now,
        department_ids=dept_ids,
    )


def set_user_departments(
    db: Session,
    *,
    account_id: int,
    user_id: int,
    department_ids: Sequence[int],
    source: str,
    now: datetime,
    actor: User | None = None,
) -> Membership:
    """Put the user in exactly these departments of the account (none: no department). Does not commit."""
    src = clean_source(source)
    membership = locked_member(db, account_id, user_id)
    dept_ids = check_departments(db, account_id, department_ids)
    current = _department_ids(db, membership)
    if current == dept_ids:
        return membership
    with db.begin_nested():
        _set_departments(db, membership, dept_ids, source=src, actor=actor, now=now, before=current)
    return membership


def set_many_users_departments(
    db: Session,
    *,
    account_id: int,
    departments: Mapping[int, Sequence[int]],
    source: str,
    now: datetime,
    actor: User | None = None,
) -> None:
    """`set_user_departments` for many users of one account (user id → department ids; the CRM sync's moves), with
    the same rows, audit records and events as one call each, in a fixed number of statements: one account lock,
    one read of the memberships and of their departments per chunk, one DELETE per chunk and one flush for the
    rest. Raises the MembershipError one of the calls would raise, having written only what the caller's savepoint
    undoes. Does not commit."""
    src = clean_source(source)
    lock_account(db, account_id)
    user_ids = list(departments)
    if not all(is_id(u) for u in user_ids):
        raise UserNotFound()
    members: dict[int, Membership] = {}
    for start in range(0, len(user_ids), IN_CHUNK):
        chunk = user_ids[start : start + IN_CHUNK]
        members.update(
            (m.user_id, m)
            for m in db.scalars(
                sa.select(Membership).where(Membership.account_id == account_id, Membership.user_id.in_(chunk))
            )
        )
    if len(members) != len(user_ids):
        raise UserNotFound()
    check_departments(db, account_id, {d for ids in departments.values() for d in ids})
    wanted = {user_id: sorted(set(ids)) for user_id, ids in departments.items()}
    placed: dict[int, list[int]] = {m.id: [] for m in members.values()}
    mids = list(placed)
    for start in range(0, len(mids), IN_CHUNK):
        for mid, dept_id in db.execute(
            sa.select(MembershipDepartment.membership_id, MembershipDepartment.department_id).where(
                MembershipDepartment.membership_id.in_(mids[start : start + IN_CHUNK])
            )
        ):
            placed[mid].append(dept_id)
    before = {mid: sorted(ids) for mid, ids in placed.items()}
    changed = [
        (members[user_id], before[members[user_id].id], dept_ids)
        for user_id, dept_ids in wanted.items()
        if before[members[user_id].id] != dept_ids
    ]
    if not changed:
        return
    changed_ids = [m.id for m, _, _ in changed]
    for start in range(0, len(changed_ids), IN_CHUNK):
        db.execute(
            sa.delete(MembershipDepartment)
            .where(MembershipDepartment.membership_id.in_(changed_ids[start : start + IN_CHUNK]))
            .execution_options(synchronize_session=False)
        )
    for membership, _, dept_ids in changed:
        for dept_id in dept_ids:
            db.add(MembershipDepartment(membership_id=membership.id, department_id=dept_id))
        membership.updated_at = now
    # What _record_change writes per change, flushed once: the audit records in the order of the changes.
    for membership, was, dept_ids in changed:
        audit_change(
            db,
            actor=actor,
            account_id=account_id,
            action="seats.departments_changed",
            source=src,
            before={"user_id": membership.user_id, "department_ids": was},
            after={"user_id": membership.user_id, "department_ids": dept_ids},
        )
    db.flush()
    for membership, was, dept_ids in changed:
        _event(
            db,
            EventKind.DEPARTMENTS_CHANGED,
            membership,
            source=src,
            actor=actor,
            now=now,
            changes={"department_ids": [was, dept_ids]},
            department_ids=dept_ids,
        )


def _link_crm(
    db: Session, membership: Membership, crm_id: int | None, *, source: Source, actor: User | None, now: datetime
) -> MembershipEvent:
    before = membership.crm_user_id
    membership.crm_user_id = crm_id
    return _record_change(
        db,
        membership,
        EventKind.CRM_LINKED,
        action="seats.crm_linked",
        field="crm_user_id",
        before=before,
        after=crm_id,
        source=source,
        actor=actor,
        now=now,
    )


def link_crm_user(
    db: Session,
    *,
    account_id: int,
    user_id: int,
    crm_user_id: int | None,
    source: str,
    now: datetime,
    actor: User | None = None,
) -> Membership:
    """Record which CRM user this membership is (None unlinks). One membership per CRM user. Does not commit."""
    src = clean_source(source)
    crm_id = clean_crm_id(crm_user_id)
    membership = locked_member(db, account_id, user_id)
    if membership.crm_user_id == crm_id:
        return membership
    if crm_id is not None:
        linked = find_member_by_crm_id(db, account_id, crm_id)
        if linked is not None and linked.id != membership.id:
            raise DuplicateUser(
                f"Пользователь CRM {crm_id} уже связан с пользователем {linked.name}.", field="crm_user_id"
            )
    with db.begin_nested():
        _link_crm(db, membership, crm_id, source=src, actor=actor, now=now)
    return membership


def _display_phone(e164: str) -> str:
    return format_phone(e164)
