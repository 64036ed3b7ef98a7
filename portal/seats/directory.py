"""The account directory: the one service that adds, deactivates, reactivates users and changes roles.

The team page, the messenger API and the CRM sync all go through here, so the rules (one membership per person,
at least one active owner, valid phones) hold whoever makes the change. Every change is audited and announced to
the directory listeners in the same transaction. The functions flush but never commit: the caller commits.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus, Role, Source, User
from portal.accounts.phone import InvalidPhone, normalize_phone
from portal.audit import AuditLog, audit_values, record_audit
from portal.pagination import KeysetPage, page_from
from portal.seats.models import Department, MembershipDepartment
from portal.textinput import text_problem

# ---------------------------------------------------------------------------------------------------------------
# Errors: each carries a Russian message for the person and the HTTP status the API answers with.


class DirectoryError(ValueError):
    """A directory change was refused; nothing was changed. `message` can be shown to the person as is."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidUserData(DirectoryError):
    """A malformed phone, an empty name, an unknown role…; `field` names the form field."""


class AccountNotFound(DirectoryError):
    status_code = 404

    def __init__(self, message: str = "Аккаунт не найден.", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class UserNotFound(DirectoryError):
    """No such user in this account (a user of another account is not found either)."""

    status_code = 404

    def __init__(self, message: str = "Пользователь не найден в этой компании.", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class DepartmentNotFound(DirectoryError):
    status_code = 404

    def __init__(self, message: str = "Отдел не найден в этой компании.", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class DirectoryConflict(DirectoryError):
    """The change contradicts the directory's current state."""

    status_code = 409


class DuplicateUser(DirectoryConflict):
    pass


class LastOwnerError(DirectoryConflict):
    def __init__(
        self,
        message: str = "В компании должен остаться хотя бы один активный владелец. "
        "Сначала назначьте владельцем другого пользователя.",
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)


class UserNotActive(DirectoryConflict):
    pass


class DepartmentInUse(DirectoryConflict):
    pass


# ---------------------------------------------------------------------------------------------------------------
# Events and listeners (the CRM outbox hooks in here).


class EventKind(enum.StrEnum):
    ADDED = "added"
    DEACTIVATED = "deactivated"
    REACTIVATED = "reactivated"
    ROLE_CHANGED = "role_changed"
    DEPARTMENTS_CHANGED = "departments_changed"
    CRM_LINKED = "crm_linked"


@dataclass(frozen=True)
class DirectoryUser:
    """A plain snapshot of one user in one account (for events, the API and listeners)."""

    user_id: int
    membership_id: int
    account_id: int
    phone: str
    name: str
    email: str | None
    role: str
    status: str
    source: str
    crm_user_id: int | None
    department_ids: tuple[int, ...] = ()

    @property
    def is_active(self) -> bool:
        return self.status == MembershipStatus.ACTIVE

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "phone": self.phone,
            "name": self.name,
            "email": self.email,
            "role": self.role,
            "status": self.status,
            "source": self.source,
            "crm_user_id": self.crm_user_id,
            "department_ids": list(self.department_ids),
        }


@dataclass(frozen=True)
class DirectoryEvent:
    """What changed, told to every listener inside the transaction that makes the change."""

    kind: EventKind
    account_id: int
    user: DirectoryUser  # the state after the change
    source: str  # who made it: "portal" (team page), "messenger" (API), "crm" (the sync)
    actor_user_id: int | None
    at: datetime
    changes: dict[str, Any] = field(default_factory=dict)  # {"role": ["member", "owner"], …}: before, after


DirectoryListener = Callable[[Session, DirectoryEvent], None]

_listeners: list[DirectoryListener] = []


def register_directory_listener(fn: DirectoryListener) -> DirectoryListener:
    """Call `fn(db, event)` after every directory change, in the same transaction (usable as a decorator).

    A listener writes its own rows (e.g. a CRM outbox entry) with `db` and must not commit. If it raises, the whole
    change is undone; raising a DirectoryError refuses the change with that message (e.g. «укажите почту»).
    Listeners are told the event's `source`, so the CRM sync's own changes need not be echoed back to the CRM.
    """
    if fn not in _listeners:
        _listeners.append(fn)
    return fn


def unregister_directory_listener(fn: DirectoryListener) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def _emit(db: Session, event: DirectoryEvent) -> None:
    for listener in list(_listeners):
        listener(db, event)


# ---------------------------------------------------------------------------------------------------------------
# Validation helpers.

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_BIGINT_MAX = 2**63 - 1
_IN_CHUNK = 900


def clean_phone(raw: Any) -> str:
    if not isinstance(raw, str):
        raise InvalidUserData("Укажите номер телефона.", field="phone")
    try:
        return normalize_phone(raw)
    except InvalidPhone as exc:
        raise InvalidUserData(str(exc), field="phone") from None


def _refuse_unreadable(raw: Any, field: str) -> None:
    # Every writer of the directory passes here (forms, the API, the CRM sync): the database never sees a NUL.
    if isinstance(raw, str):
        problem = text_problem(raw, multiline=True, max_length=1000)
        if problem:
            raise InvalidUserData(problem, field=field)


def clean_name(raw: Any) -> str:
    _refuse_unreadable(raw, "name")
    name = " ".join(raw.split()) if isinstance(raw, str) else ""
    if not name:
        raise InvalidUserData("Укажите имя пользователя.", field="name")
    if len(name) > 200:
        raise InvalidUserData("Имя не длиннее 200 символов.", field="name")
    return name


def clean_email(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidUserData("Проверьте адрес почты: например, anna@example.ru.", field="email")
    _refuse_unreadable(raw, "email")
    email = raw.strip()
    if not email:
        return None
    if len(email) > 254 or not _EMAIL_RE.match(email):
        raise InvalidUserData("Проверьте адрес почты: например, anna@example.ru.", field="email")
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def clean_role(raw: Any) -> Role:
    try:
        return Role(raw)
    except ValueError:
        raise InvalidUserData("Выберите роль: владелец, бухгалтер или сотрудник.", field="role") from None


def _clean_source(raw: Any) -> Source:
    try:
        return Source(raw)
    except ValueError:
        # A programming error, not a person's: every caller names itself.
        raise ValueError(f"unknown directory source {raw!r}") from None


def _clean_crm_id(raw: Any, what: str = "CRM") -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= _BIGINT_MAX:
        raise InvalidUserData(f"Идентификатор {what} должен быть целым неотрицательным числом.", field="crm_user_id")
    return raw


# ---------------------------------------------------------------------------------------------------------------
# Reads.


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
    account = db.get(Account, account_id) if _is_id(account_id) else None
    if account is None:
        raise AccountNotFound()
    return account


def get_member(db: Session, account_id: int, user_id: int) -> Membership:
    """The user's membership in this account; UserNotFound if they are not in it (whatever else exists)."""
    membership = None
    if _is_id(user_id):
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
    for start in range(0, len(ids), _IN_CHUNK):
        rows = db.execute(
            sa.select(MembershipDepartment.membership_id, Department)
            .join(Department, Department.id == MembershipDepartment.department_id)
            .where(MembershipDepartment.membership_id.in_(ids[start : start + _IN_CHUNK]))
            .order_by(Department.name)
        ).all()
        for membership_id, department in rows:
            result[membership_id].append(department)
    return result


def snapshot(db: Session, membership: Membership, department_ids: Sequence[int] | None = None) -> DirectoryUser:
    if department_ids is None:
        department_ids = [d.id for d in departments_of(db, [membership.id])[membership.id]]
    user = membership.user
    return DirectoryUser(
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


def list_users(db: Session, account_id: int, *, status: str | None = None) -> list[DirectoryUser]:
    """Every user of the account as plain snapshots, departments included (two queries whatever the size)."""
    get_account(db, account_id)
    members = list_members(db, account_id, status=status)
    departments = departments_of(db, [m.id for m in members])
    return [snapshot(db, m, [d.id for d in departments[m.id]]) for m in members]


def list_departments(db: Session, account_id: int) -> list[Department]:
    return list(db.scalars(sa.select(Department).where(Department.account_id == account_id).order_by(Department.name)))


def department_member_counts(db: Session, account_id: int) -> dict[int, int]:
    """Active users per department of the account (a department nobody is in is absent)."""
    rows = db.execute(
        sa.select(MembershipDepartment.department_id, sa.func.count())
        .join(Membership, Membership.id == MembershipDepartment.membership_id)
        .where(Membership.account_id == account_id, Membership.status == MembershipStatus.ACTIVE.value)
        .group_by(MembershipDepartment.department_id)
    ).all()
    return {department_id: n for department_id, n in rows}


# ---------------------------------------------------------------------------------------------------------------
# Writes.


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _BIGINT_MAX


def _lock_account(db: Session, account_id: int) -> None:
    """Serialise directory changes of one account, so two owners cannot demote each other to zero owners.

    PostgreSQL: a row lock on the account. SQLite: a no-op write, which takes SQLite's single write lock and
    (as a side effect the savepoints below rely on) really begins the transaction.
    """
    if not _is_id(account_id):
        raise AccountNotFound()
    if db.get_bind().dialect.name == "sqlite":
        found = db.execute(
            sa.update(Account)
            .where(Account.id == account_id)
            .values(name=Account.name)
            .execution_options(synchronize_session=False)
        ).rowcount
    else:
        found = db.scalar(sa.select(Account.id).where(Account.id == account_id).with_for_update())
    if not found:
        raise AccountNotFound()


def _audit(
    db: Session,
    *,
    actor: User | None,
    account_id: int,
    action: str,
    source: Source,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    reason: str | None = None,
) -> None:
    note = f"источник: {source.title}"
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action=action,
        before=before,
        after=after,
        reason=f"{note}; {reason}" if reason else note,
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
) -> DirectoryEvent:
    event = DirectoryEvent(
        kind=kind,
        account_id=membership.account_id,
        user=snapshot(db, membership, department_ids),
        source=source.value,
        actor_user_id=actor.id if actor is not None else None,
        at=now,
        changes=changes,
    )
    _emit(db, event)
    return event


def _check_departments(db: Session, account_id: int, department_ids: Iterable[int]) -> list[int]:
    ids = sorted(set(department_ids))
    if not ids:
        return []
    if not all(_is_id(i) for i in ids):
        raise DepartmentNotFound()
    found = set(db.scalars(sa.select(Department.id).where(Department.account_id == account_id, Department.id.in_(ids))))
    if found != set(ids):
        raise DepartmentNotFound()
    return ids


def _ensure_owner_remains(db: Session, membership: Membership) -> None:
    if membership.role == Role.OWNER and membership.is_active and count_active_owners(db, membership.account_id) <= 1:
        raise LastOwnerError()


@dataclass(frozen=True)
class AddResult:
    membership: Membership
    created: bool  # False: the person was in the account, deactivated, and is active again
    events: tuple[DirectoryEvent, ...]


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
    src = _clean_source(source)
    e164 = clean_phone(phone)
    clean = clean_name(name)
    mail = clean_email(email)
    new_role = clean_role(role)
    crm_id = _clean_crm_id(crm_user_id)
    _lock_account(db, account_id)
    dept_ids = _check_departments(db, account_id, department_ids)

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
        after = {
            "user_id": user.id,
            "phone": user.phone,
            "name": clean,
            "role": new_role.value,
            "source": src.value,
        }
        if crm_id is not None:
            after["crm_user_id"] = crm_id
        if dept_ids:
            after["department_ids"] = dept_ids
        _audit(db, actor=actor, account_id=account_id, action="seats.user_added", source=src, before=None, after=after)
        event = _event(
            db, EventKind.ADDED, membership, source=src, actor=actor, now=now, changes={}, department_ids=dept_ids
        )
        return AddResult(membership, created=True, events=(event,))


@dataclass(frozen=True)
class NewUser:
    """One person for `add_users`: what `add_user` takes, for many at once."""

    phone: str
    name: str
    email: str | None = None
    crm_user_id: int | None = None
    department_ids: tuple[int, ...] = ()
    role: str = Role.MEMBER.value


@dataclass(frozen=True)
class Added:
    """A person `add_users` put in the account as a new membership."""

    membership_id: int
    user_id: int


def add_users(
    db: Session,
    *,
    account_id: int,
    people: Sequence[NewUser],
    source: str,
    now: datetime,
    actor: User | None = None,
) -> list[Added | DirectoryError | None]:
    """Add many people as new active memberships with the same outcome as `add_user` one by one (the same rows,
    audit records and events), in a fixed number of statements: one account lock, one look-up per chunk of
    phones, and one multi-row INSERT each for persons, memberships, departments and audit records.

    The answer, per person: `Added`; a DirectoryError for one `add_user` would refuse (bad data, an unknown
    department); or None for one this bulk path leaves to `add_user` — a phone or CRM user the account already
    has (a duplicate or a comeback: a rare case, with its own rules) or one repeated within `people`. Does not
    commit.
    """
    src = _clean_source(source)
    _lock_account(db, account_id)
    answers: list[Added | DirectoryError | None] = [None] * len(people)
    cleaned: list[tuple[int, str, str, str | None, Role, int | None, tuple[int, ...]]] = []
    for index, person in enumerate(people):
        try:
            cleaned.append(
                (
                    index,
                    clean_phone(person.phone),
                    clean_name(person.name),
                    clean_email(person.email),
                    clean_role(person.role),
                    _clean_crm_id(person.crm_user_id),
                    tuple(sorted(set(person.department_ids))),
                )
            )
        except DirectoryError as exc:
            answers[index] = exc
    departments = {d for row in cleaned for d in row[6]}
    if departments:
        if not all(_is_id(d) for d in departments):
            known: set[int] = set()
        else:
            known = set(
                db.scalars(
                    sa.select(Department.id).where(
                        Department.account_id == account_id, Department.id.in_(sorted(departments))
                    )
                )
            )
        for row in cleaned:
            if not set(row[6]) <= known:
                answers[row[0]] = DepartmentNotFound()
        cleaned = [row for row in cleaned if answers[row[0]] is None]
    # What the account already has, as plain columns: a person who is (or was) here goes through add_user.
    taken_phones: set[str] = set()
    taken_crm: set[int] = set()
    for phone, crm_id in db.execute(
        sa.select(User.phone, Membership.crm_user_id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.account_id == account_id)
    ):
        taken_phones.add(phone)
        if crm_id is not None:
            taken_crm.add(crm_id)
    simple = []
    for row in cleaned:
        _, phone, _, _, _, crm_id, _ = row
        if phone in taken_phones or (crm_id is not None and crm_id in taken_crm):
            continue  # answered None: add_user's own path (a duplicate, a comeback or a repeat within `people`)
        taken_phones.add(phone)
        if crm_id is not None:
            taken_crm.add(crm_id)
        simple.append(row)
    if not simple:
        return answers
    # Persons: the portal's existing ones by phone (their own profile untouched), the rest created.
    phones = [row[1] for row in simple]
    person_of = _persons_by_phone(db, phones)
    missing = [row for row in simple if row[1] not in person_of]
    if missing:
        try:
            with db.begin_nested():
                person_of.update(_insert_persons(db, missing, now))
        except sa.exc.IntegrityError:
            # Someone added some of these people elsewhere a moment ago: their rows are the persons.
            person_of = _persons_by_phone(db, phones)
            still = [row for row in simple if row[1] not in person_of]
            if still:
                person_of.update(_insert_persons(db, still, now))
    # RETURNING with the natural key rather than in parameter order: SQLite can only keep the order one row
    # per statement, while unordered rows come back from one multi-row INSERT per batch.
    membership_of = dict(
        db.execute(
            sa.insert(Membership).returning(Membership.user_id, Membership.id).execution_options(render_nulls=True),
            [
                {
                    "account_id": account_id,
                    "user_id": person_of[phone],
                    "role": role.value,
                    "status": MembershipStatus.ACTIVE.value,
                    "source": src.value,
                    "crm_user_id": crm_id,
                    "name": name,
                    "email": mail,
                    "created_at": now,
                    "updated_at": now,
                }
                for _, phone, name, mail, role, crm_id, _ in simple
            ],
        ).all()
    )
    membership_ids = [membership_of[person_of[row[1]]] for row in simple]
    placements = [
        {"membership_id": mid, "department_id": dept}
        for mid, row in zip(membership_ids, simple, strict=True)
        for dept in row[6]
    ]
    if placements:
        db.execute(sa.insert(MembershipDepartment).execution_options(render_nulls=True), placements)
    audits = []
    note = f"источник: {src.title}"
    for mid, (index, phone, name, _mail, role, crm_id, dept_ids) in zip(membership_ids, simple, strict=True):
        user_id = person_of[phone]
        after: dict[str, Any] = {
            "user_id": user_id,
            "phone": phone,
            "name": name,
            "role": role.value,
            "source": src.value,
        }
        if crm_id is not None:
            after["crm_user_id"] = crm_id
        if dept_ids:
            after["department_ids"] = list(dept_ids)
        audits.append(
            audit_values(
                actor=actor, account=account_id, action="seats.user_added", before=None, after=after, reason=note
            )
        )
        answers[index] = Added(mid, user_id)
    db.execute(sa.insert(AuditLog).execution_options(render_nulls=True), audits)
    for mid, (_, phone, name, mail, role, crm_id, dept_ids) in zip(membership_ids, simple, strict=True):
        user = DirectoryUser(
            user_id=person_of[phone],
            membership_id=mid,
            account_id=account_id,
            phone=phone,
            name=name,
            email=mail,
            role=role.value,
            status=MembershipStatus.ACTIVE.value,
            source=src.value,
            crm_user_id=crm_id,
            department_ids=dept_ids,
        )
        _emit(
            db,
            DirectoryEvent(
                kind=EventKind.ADDED,
                account_id=account_id,
                user=user,
                source=src.value,
                actor_user_id=actor.id if actor is not None else None,
                at=now,
                changes={},
            ),
        )
    return answers


def _insert_persons(db: Session, rows: Sequence[tuple[Any, ...]], now: datetime) -> dict[str, int]:
    return dict(
        db.execute(
            sa.insert(User).returning(User.phone, User.id).execution_options(render_nulls=True),
            [{"phone": r[1], "name": r[2], "email": r[3], "created_at": now} for r in rows],
        ).all()
    )


def _persons_by_phone(db: Session, phones: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(phones), _IN_CHUNK):
        found.update(
            db.execute(sa.select(User.phone, User.id).where(User.phone.in_(phones[start : start + _IN_CHUNK]))).all()
        )
    return found


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
    src = _clean_source(source)
    _lock_account(db, account_id)
    membership = get_member(db, account_id, user_id)
    if not membership.is_active:
        return membership
    _ensure_owner_remains(db, membership)
    with db.begin_nested():
        membership.status = MembershipStatus.DEACTIVATED.value
        membership.updated_at = now
        db.flush()
        _audit(
            db,
            actor=actor,
            account_id=account_id,
            action="seats.user_deactivated",
            source=src,
            before={"user_id": membership.user_id, "status": MembershipStatus.ACTIVE.value},
            after={"user_id": membership.user_id, "status": MembershipStatus.DEACTIVATED.value},
            reason=reason,
        )
        _event(
            db,
            EventKind.DEACTIVATED,
            membership,
            source=src,
            actor=actor,
            now=now,
            changes={"status": [MembershipStatus.ACTIVE.value, MembershipStatus.DEACTIVATED.value]},
        )
    return membership


def _reactivate(
    db: Session, membership: Membership, *, source: Source, actor: User | None, now: datetime, reason: str | None
) -> DirectoryEvent:
    membership.status = MembershipStatus.ACTIVE.value
    membership.updated_at = now
    db.flush()
    _audit(
        db,
        actor=actor,
        account_id=membership.account_id,
        action="seats.user_reactivated",
        source=source,
        before={"user_id": membership.user_id, "status": MembershipStatus.DEACTIVATED.value},
        after={"user_id": membership.user_id, "status": MembershipStatus.ACTIVE.value},
        reason=reason,
    )
    return _event(
        db,
        EventKind.REACTIVATED,
        membership,
        source=source,
        actor=actor,
        now=now,
        changes={"status": [MembershipStatus.DEACTIVATED.value, MembershipStatus.ACTIVE.value]},
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
    src = _clean_source(source)
    _lock_account(db, account_id)
    membership = get_member(db, account_id, user_id)
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
    _lock_account(db, account_id)
    membership = get_member(db, account_id, user.id)
    if not membership.is_active:
        return membership
    _ensure_owner_remains(db, membership)
    with db.begin_nested():
        membership.status = MembershipStatus.LEFT.value
        membership.updated_at = now
        db.flush()
        _audit(
            db,
            actor=user,
            account_id=account_id,
            action="seats.user_left",
            source=Source.PORTAL,
            before={"user_id": user.id, "status": MembershipStatus.ACTIVE.value},
            after={"user_id": user.id, "status": MembershipStatus.LEFT.value},
        )
        _event(
            db,
            EventKind.DEACTIVATED,
            membership,
            source=Source.PORTAL,
            actor=user,
            now=now,
            changes={"status": [MembershipStatus.ACTIVE.value, MembershipStatus.LEFT.value]},
        )
    return membership


def _change_role(
    db: Session, membership: Membership, role: Role, *, source: Source, actor: User | None, now: datetime
) -> DirectoryEvent:
    before = membership.role
    membership.role = role.value
    membership.updated_at = now
    db.flush()
    _audit(
        db,
        actor=actor,
        account_id=membership.account_id,
        action="seats.role_changed",
        source=source,
        before={"user_id": membership.user_id, "role": before},
        after={"user_id": membership.user_id, "role": role.value},
    )
    return _event(
        db,
        EventKind.ROLE_CHANGED,
        membership,
        source=source,
        actor=actor,
        now=now,
        changes={"role": [before, role.value]},
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
    src = _clean_source(source)
    new_role = clean_role(role)
    _lock_account(db, account_id)
    membership = get_member(db, account_id, user_id)
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
) -> DirectoryEvent:
    if before is None:
        before = _department_ids(db, membership)
    db.execute(
        sa.delete(MembershipDepartment)
        .where(MembershipDepartment.membership_id == membership.id)
        .execution_options(synchronize_session=False)
    )
    for dept_id in dept_ids:
        db.add(MembershipDepartment(membership_id=membership.id, department_id=dept_id))
    membership.updated_at = now
    db.flush()
    _audit(
        db,
        actor=actor,
        account_id=membership.account_id,
        action="seats.departments_changed",
        source=source,
        before={"user_id": membership.user_id, "department_ids": before},
        after={"user_id": membership.user_id, "department_ids": dept_ids},
    )
    return _event(
        db,
        EventKind.DEPARTMENTS_CHANGED,
        membership,
        source=source,
        actor=actor,
        now=now,
        changes={"department_ids": [before, dept_ids]},
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
    src = _clean_source(source)
    _lock_account(db, account_id)
    membership = get_member(db, account_id, user_id)
    dept_ids = _check_departments(db, account_id, department_ids)
    current = _department_ids(db, membership)
    if current == dept_ids:
        return membership
    with db.begin_nested():
        _set_departments(db, membership, dept_ids, source=src, actor=actor, now=now, before=current)
    return membership


def _link_crm(
    db: Session, membership: Membership, crm_id: int | None, *, source: Source, actor: User | None, now: datetime
) -> DirectoryEvent:
    before = membership.crm_user_id
    membership.crm_user_id = crm_id
    membership.updated_at = now
    db.flush()
    _audit(
        db,
        actor=actor,
        account_id=membership.account_id,
        action="seats.crm_linked",
        source=source,
        before={"user_id": membership.user_id, "crm_user_id": before},
        after={"user_id": membership.user_id, "crm_user_id": crm_id},
    )
    return _event(
        db,
        EventKind.CRM_LINKED,
        membership,
        source=source,
        actor=actor,
        now=now,
        changes={"crm_user_id": [before, crm_id]},
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
    src = _clean_source(source)
    crm_id = _clean_crm_id(crm_user_id)
    _lock_account(db, account_id)
    membership = get_member(db, account_id, user_id)
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


# Departments -----------------------------------------------------------------------------------------------------


def _clean_department_name(raw: Any) -> str:
    _refuse_unreadable(raw, "name")
    name = " ".join(raw.split()) if isinstance(raw, str) else ""
    if not name:
        raise InvalidUserData("Укажите название отдела.", field="name")
    if len(name) > 200:
        raise InvalidUserData("Название отдела не длиннее 200 символов.", field="name")
    return name


def get_department(db: Session, account_id: int, department_id: int) -> Department:
    department = None
    if _is_id(department_id):
        department = db.scalars(
            sa.select(Department).where(Department.account_id == account_id, Department.id == department_id)
        ).first()
    if department is None:
        raise DepartmentNotFound()
    return department


def find_department_by_crm_group(db: Session, account_id: int, crm_group_id: int) -> Department | None:
    return db.scalars(
        sa.select(Department).where(Department.account_id == account_id, Department.crm_group_id == crm_group_id)
    ).first()


def create_department(
    db: Session,
    *,
    account_id: int,
    name: str,
    source: str,
    now: datetime,
    crm_group_id: int | None = None,
    actor: User | None = None,
) -> Department:
    """A new department; with crm_group_id it mirrors that CRM group (one per group). Does not commit."""
    src = _clean_source(source)
    clean = _clean_department_name(name)
    group_id = _clean_crm_id(crm_group_id, "группы CRM")
    _lock_account(db, account_id)
    if group_id is not None and find_department_by_crm_group(db, account_id, group_id) is not None:
        raise DirectoryConflict(f"Отдел для группы CRM {group_id} уже есть.", field="crm_group_id")
    with db.begin_nested():
        department = Department(
            account_id=account_id,
            name=clean,
            source=src.value,
            crm_group_id=group_id,
            created_at=now,
            updated_at=now,
        )
        db.add(department)
        db.flush()
        _audit(
            db,
            actor=actor,
            account_id=account_id,
            action="seats.department_created",
            source=src,
            before=None,
            after={"department_id": department.id, "name": clean, "crm_group_id": group_id},
        )
    return department


def rename_department(
    db: Session,
    *,
    account_id: int,
    department_id: int,
    name: str,
    source: str,
    now: datetime,
    actor: User | None = None,
) -> Department:
    src = _clean_source(source)
    clean = _clean_department_name(name)
    _lock_account(db, account_id)
    department = get_department(db, account_id, department_id)
    if department.name == clean:
        return department
    with db.begin_nested():
        before = department.name
        department.name = clean
        department.updated_at = now
        db.flush()
        _audit(
            db,
            actor=actor,
            account_id=account_id,
            action="seats.department_renamed",
            source=src,
            before={"department_id": department.id, "name": before},
            after={"department_id": department.id, "name": clean},
        )
    return department


def delete_department(
    db: Session,
    *,
    account_id: int,
    department_id: int,
    source: str,
    now: datetime,
    actor: User | None = None,
) -> None:
    """Remove a department nobody active is in (deactivated users simply lose it). Does not commit."""
    src = _clean_source(source)
    _lock_account(db, account_id)
    department = get_department(db, account_id, department_id)
    if department_member_counts(db, account_id).get(department.id):
        raise DepartmentInUse(f"В отделе «{department.name}» есть активные пользователи.")
    with db.begin_nested():
        _audit(
            db,
            actor=actor,
            account_id=account_id,
            action="seats.department_deleted",
            source=src,
            before={"department_id": department.id, "name": department.name, "crm_group_id": department.crm_group_id},
            after=None,
        )
        db.execute(
            sa.delete(MembershipDepartment)
            .where(MembershipDepartment.department_id == department.id)
            .execution_options(synchronize_session=False)
        )
        db.delete(department)
        db.flush()


def _display_phone(e164: str) -> str:
    from portal.accounts.phone import format_phone

    return format_phone(e164)


__all__ = [
    "AccountNotFound",
    "AddResult",
    "Added",
    "DepartmentInUse",
    "DepartmentNotFound",
    "DirectoryConflict",
    "DirectoryError",
    "DirectoryEvent",
    "DirectoryListener",
    "DirectoryUser",
    "DuplicateUser",
    "EventKind",
    "InvalidUserData",
    "LastOwnerError",
    "NewUser",
    "UserNotActive",
    "UserNotFound",
    "add_user",
    "add_users",
    "change_role",
    "count_active",
    "count_active_owners",
    "count_members",
    "create_department",
    "deactivate_user",
    "delete_department",
    "department_member_counts",
    "departments_of",
    "find_department_by_crm_group",
    "find_member_by_crm_id",
    "find_member_by_phone",
    "get_account",
    "get_department",
    "get_member",
    "get_primary_owner",
    "leave_account",
    "link_crm_user",
    "list_departments",
    "list_member_departments",
    "list_member_rows",
    "list_members",
    "list_users",
    "reactivate_user",
    "register_directory_listener",
    "rename_department",
    "set_user_departments",
    "snapshot",
    "unregister_directory_listener",
]
