"""Reading an account's membership: seat counts, the team's pages and the plain snapshots the API and the CRM use."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus, Role, User
from portal.pagination import KeysetPage, page_from
from portal.seats.errors import AccountNotFound, UserNotFound
from portal.seats.events import MembershipUser
from portal.seats.models import Department, MembershipDepartment
from portal.seats.rules import IN_CHUNK, is_id


def count_active(db: Session, account_id: int) -> int:
    """Seats used: the account's active memberships (one indexed count, ix_memberships_account_status)."""
    return db.scalar(
        sa.select(sa.func.count())
        .select_from(Membership)
        .where(Membership.account_id == account_id, Membership.status == MembershipStatus.ACTIVE.value)
    )


def count_active_owners(db: Session, account_id: int) -> int:
    return db.scalar(
        sa.select(sa.func.count())
        .select_from(Membership)
        .where(
            Membership.account_id == account_id,
            Membership.status == MembershipStatus.ACTIVE.value,
            Membership.role == Role.OWNER.value,
        )
    )


def get_account(db: Session, account_id: int) -> Account:
    account = db.get(Account, account_id) if is_id(account_id) else None
    if account is None:
        raise AccountNotFound()
    return account


def get_member(db: Session, account_id: int, user_id: int) -> Membership:
    """The user's membership in this account; UserNotFound if they are not in it (whatever else exists)."""
    membership = None
    if is_id(user_id):
        membership = db.scalars(
            sa.select(Membership).where(Membership.account_id == account_id, Membership.user_id == user_id)
        ).first()
    if membership is None:
        raise UserNotFound()
    return membership


def find_member_by_phone(db: Session, account_id: int, phone: str) -> Membership | None:
    return db.scalars(
        sa.select(Membership).join(User).where(Membership.account_id == account_id, User.phone == phone)
    ).first()


def find_member_by_crm_id(db: Session, account_id: int, crm_user_id: int) -> Membership | None:
    return db.scalars(
        sa.select(Membership).where(Membership.account_id == account_id, Membership.crm_user_id == crm_user_id)
    ).first()


def get_primary_owner(db: Session, account_id: int) -> Membership | None:
    """Whom the account's users ask about the plan: its longest-standing active owner, as the company records them."""
    return db.scalars(
        sa.select(Membership)
        .where(
            Membership.account_id == account_id,
            Membership.status == MembershipStatus.ACTIVE.value,
            Membership.role == Role.OWNER.value,
        )
        .order_by(Membership.id)
        .limit(1)
    ).first()


def _members_query(account_id: int, status: str | None, search: str | None) -> sa.Select[Any]:
    q = sa.select(Membership).join(User, Membership.user_id == User.id).where(Membership.account_id == account_id)
    if status:
        q = q.where(Membership.status == status)
    if search:
        text = search.strip()[:100]
        conditions = [Membership.name.icontains(variant, autoescape=True) for variant in {text, text.title()}]
        digits = re.sub(r"\D", "", text)
        if len(digits) >= 3:
            conditions.append(User.phone.contains(digits, autoescape=True))
        q = q.where(sa.or_(*conditions))
    return q


def list_members(
    db: Session,
    account_id: int,
    *,
    status: str | None = None,
    search: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Membership]:
    """The account's users: active first, then owners, accountants, members, each by name."""
    q = _members_query(account_id, status, search).order_by(*_member_order())
    if limit is not None:
        q = q.limit(limit).offset(offset)
    return list(db.scalars(q).unique())


def _member_order() -> tuple[Any, ...]:
    role_order = sa.case(
        (Membership.role == Role.OWNER.value, 0), (Membership.role == Role.ACCOUNTANT.value, 1), else_=2
    )
    status_order = sa.case((Membership.status == MembershipStatus.ACTIVE.value, 0), else_=1)
    return (status_order, role_order, Membership.name, Membership.id)


def list_member_rows(db: Session, account_id: int) -> list[sa.Row[Any]]:
    """Every membership of the account as plain columns (membership_id, user_id, name, phone, email, status,
    crm_user_id), in list_members' order: for a reader of 10 000 users that changes none (the CRM sync's plan)."""
    return list(
        db.execute(
            sa.select(
                Membership.id.label("membership_id"),
                Membership.user_id,
                Membership.name,
                User.phone,
                Membership.email,
                Membership.status,
                Membership.crm_user_id,
            )
            .join(User, User.id == Membership.user_id)
            .where(Membership.account_id == account_id)
            .order_by(*_member_order())
        )
    )


def list_member_departments(db: Session, account_id: int) -> dict[int, set[int]]:
    """Membership id → its department ids, for the whole account in one query."""
    placed: dict[int, set[int]] = {}
    for membership_id, department_id in db.execute(
        sa.select(MembershipDepartment.membership_id, MembershipDepartment.department_id)
        .join(Membership, Membership.id == MembershipDepartment.membership_id)
        .where(Membership.account_id == account_id)
    ):
        placed.setdefault(membership_id, set()).add(department_id)
    return placed


# The team page's order — active first, then owners, accountants, members, each by name — as groups of
# (status, role) whose rows an index on (account_id, status, role, name, id) returns in order. A group's rank is
# status rank × 3 + role rank; deactivated and left people share the second status rank.
_STATUS_RANKS = (
    (MembershipStatus.ACTIVE.value, 0),
    (MembershipStatus.DEACTIVATED.value, 1),
    (MembershipStatus.LEFT.value, 1),
)
_ROLE_RANKS = ((Role.OWNER.value, 0), (Role.ACCOUNTANT.value, 1), (Role.MEMBER.value, 2))
MEMBER_KEY_TYPES = (int, str, int)


def member_key(membership: Membership) -> tuple[int, str, int]:
    status_rank = 0 if membership.status == MembershipStatus.ACTIVE.value else 1
    role_rank = {role: rank for role, rank in _ROLE_RANKS}.get(membership.role, 2)
    return (status_rank * 3 + role_rank, membership.name, membership.id)


def list_members_page(
    db: Session,
    account_id: int,
    *,
    status: str | None = None,
    search: str | None = None,
    limit: int = 50,
    after: tuple[Any, ...] | None = None,
    before: tuple[Any, ...] | None = None,
) -> KeysetPage[Membership]:
    """One page of the team, in list_members' order, after (or before) a row's key: two queries whatever the size.

    Each (status, role) group is read from the index from the key on, at most limit + 1 rows, and the union of the
    groups is cut to limit + 1: no OFFSET, no sort of the whole account.
    """
    if after is not None:
        before = None
    backwards = before is not None
    cursor = after if after is not None else before
    parts = []
    for status_value, status_rank in _STATUS_RANKS:
        if status and status != status_value:
            continue
        for role_value, role_rank in _ROLE_RANKS:
            group = status_rank * 3 + role_rank
            q = _members_query(account_id, status_value, search).where(Membership.role == role_value)
            if cursor is not None:
                key_group, key_name, key_id = cursor
                if (group < key_group) if not backwards else (group > key_group):
                    continue  # the whole group lies on the other side of the key
                if group == key_group:
                    name_id = sa.tuple_(Membership.name, Membership.id)
                    key = sa.tuple_(key_name, key_id)
                    q = q.where(name_id < key if backwards else name_id > key)
            order = (Membership.name.desc(), Membership.id.desc()) if backwards else (Membership.name, Membership.id)
            inner = (
                q.with_only_columns(
                    sa.literal(group, sa.Integer).label("grp"),
                    Membership.name.label("name"),
                    Membership.id.label("id"),
                )
                .order_by(*order)
                .limit(limit + 1)
                .subquery()
            )
            parts.append(sa.select(inner.c.grp, inner.c.name, inner.c.id))
    if not parts:
        return page_from([], member_key, limit=limit, after=after, before=before)
    union = sa.union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
    cols = (union.c.grp, union.c.name, union.c.id)
    keys = db.execute(
        sa.select(*cols).order_by(*[c.desc() if backwards else c.asc() for c in cols]).limit(limit + 1)
    ).all()
    ids = [row.id for row in keys]
    by_id = {m.id: m for m in db.scalars(sa.select(Membership).where(Membership.id.in_(ids))).unique()} if ids else {}
    members = [by_id[i] for i in ids if i in by_id]
    if backwards:
        members.reverse()
    return page_from(members, member_key, limit=limit, after=after, before=before)


def count_members_by_status(db: Session, account_id: int) -> dict[str, int]:
    """The team page's tab counts in one grouped count over the (account_id, status) index, no join to users."""
    rows = db.execute(
        sa.select(Membership.status, sa.func.count())
        .where(Membership.account_id == account_id)
        .group_by(Membership.status)
    ).all()
    return {status: n for status, n in rows}


def count_members(db: Session, account_id: int, *, status: str | None = None, search: str | None = None) -> int:
    q = _members_query(account_id, status, search).with_only_columns(sa.func.count(Membership.id))
    return db.scalar(q.order_by(None))


def departments_of(db: Session, membership_ids: Iterable[int]) -> dict[int, list[Department]]:
    """Departments of several memberships in one query (no query per row on the team page)."""
    ids = list(membership_ids)
    result: dict[int, list[Department]] = {mid: [] for mid in ids}
    if not ids:
        return result
    # In chunks, so a huge account stays within the database's limit on bound parameters.
    for start in range(0, len(ids), IN_CHUNK):
        rows = db.execute(
            sa.select(MembershipDepartment.membership_id, Department)
            .join(Department, Department.id == MembershipDepartment.department_id)
            .where(MembershipDepartment.membership_id.in_(ids[start : start + IN_CHUNK]))
            .order_by(Department.name)
        ).all()
        for membership_id, department in rows:
            result[membership_id].append(department)
    return result


def snapshot(db: Session, membership: Membership, department_ids: Sequence[int] | None = None) -> MembershipUser:
    if department_ids is None:
        department_ids = [d.id for d in departments_of(db, [membership.id])[membership.id]]
    user = membership.user
    return MembershipUser(
        user_id=user.id,
        membership_id=membership.id,
        account_id=membership.account_id,
        phone=user.phone,
        name=membership.name,
        email=membership.email,
        role=membership.role,
        status=membership.status,
        source=membership.source,
        crm_user_id=membership.crm_user_id,
        department_ids=tuple(sorted(department_ids)),
    )


def list_users(db: Session, account_id: int, *, status: str | None = None) -> list[MembershipUser]:
    """Every user of the account as plain snapshots, departments included (two queries whatever the size)."""
    get_account(db, account_id)
    members = list_members(db, account_id, status=status)
    departments = departments_of(db, [m.id for m in members])
    return [snapshot(db, m, [d.id for d in departments[m.id]]) for m in members]
