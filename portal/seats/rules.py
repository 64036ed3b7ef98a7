"""The checks every membership and department change shares: cleaning input, the account lock, the audit record."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Role, Source, User
from portal.accounts.phone import InvalidPhone, normalize_phone
from portal.audit import record_audit
from portal.seats.errors import AccountNotFound, DepartmentNotFound, InvalidUserData
from portal.seats.models import Department
from portal.textinput import text_problem

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_BIGINT_MAX = 2**63 - 1
IN_CHUNK = 900  # ids per IN (…): a huge account stays within the database's limit on bound parameters


_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_BIGINT_MAX = 2**63 - 1
IN_CHUNK = 900


def clean_phone(raw: Any) -> str:
    if not isinstance(raw, str):
        raise InvalidUserData("Укажите номер телефона.", field="phone")
    try:
        return normalize_phone(raw)
    except InvalidPhone as exc:
        raise InvalidUserData(str(exc), field="phone") from None


def refuse_unreadable(raw: Any, field: str) -> None:
    # Every writer of the membership passes here (forms, the API, the CRM sync): the database never sees a NUL.
    if isinstance(raw, str):
        problem = text_problem(raw, multiline=True, max_length=1000)
        if problem:
            raise InvalidUserData(problem, field=field)


def clean_name(raw: Any) -> str:
    return clean_title(raw, empty="Укажите имя пользователя.", too_long="Имя не длиннее 200 символов.")


def clean_title(raw: Any, *, empty: str, too_long: str) -> str:
    """A person's or a department's name: readable, spaces collapsed, 1 to 200 characters (the «name» field)."""
    refuse_unreadable(raw, "name")
    name = " ".join(raw.split()) if isinstance(raw, str) else ""
    if not name:
        raise InvalidUserData(empty, field="name")
    if len(name) > 200:
        raise InvalidUserData(too_long, field="name")
    return name


def clean_email(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidUserData("Проверьте адрес почты: например, anna@example.ru.", field="email")
    refuse_unreadable(raw, "email")
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


def clean_source(raw: Any) -> Source:
    try:
        return Source(raw)
    except ValueError:
        # A programming error, not a person's: every caller names itself.
        raise ValueError(f"unknown membership source {raw!r}") from None


def clean_crm_id(raw: Any, what: str = "CRM") -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= _BIGINT_MAX:
        raise InvalidUserData(f"Идентификатор {what} должен быть целым неотрицательным числом.", field="crm_user_id")
    return raw


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _BIGINT_MAX


def lock_account(db: Session, account_id: int) -> None:
    """Serialise membership changes of one account, so two owners cannot demote each other to zero owners.

    PostgreSQL: a row lock on the account. SQLite: a no-op write, which takes SQLite's single write lock and
    (as a side effect the savepoints below rely on) really begins the transaction.
    """
    if not is_id(account_id):
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


def audit_change(
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


def check_departments(db: Session, account_id: int, department_ids: Iterable[int]) -> list[int]:
    ids = sorted(set(department_ids))
    if not ids:
        return []
    if not all(is_id(i) for i in ids):
        raise DepartmentNotFound()
    found = set(db.scalars(sa.select(Department.id).where(Department.account_id == account_id, Department.id.in_(ids))))
    if found != set(ids):
        raise DepartmentNotFound()
    return ids


def added_record(
    *, user_id: int, phone: str, name: str, role: Role, source: Source, crm_id: int | None, dept_ids: Sequence[int]
) -> dict[str, Any]:
    """The audit record's «after» for a person added to the account (one by one or in bulk alike)."""
    after: dict[str, Any] = {
        "user_id": user_id,
        "phone": phone,
        "name": name,
        "role": role.value,
        "source": source.value,
    }
    if crm_id is not None:
        after["crm_user_id"] = crm_id
    if dept_ids:
        after["department_ids"] = list(dept_ids)
    return after
