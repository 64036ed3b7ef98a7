"""The team page's service: the owner's changes to the team and the over-limit confirmation they may need first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Source, User
from portal.accounts.phone import format_phone
from portal.billing.catalog import Plan
from portal.seats.crm.models import CrmConnection
from portal.seats.limits import Limits, get_limits, suggest_plan
from portal.seats.members import AddResult, add_user
from portal.seats.queries import find_member_by_phone
from portal.wording import plural_ru

# What the over-limit confirmation says the change does, by change.
_AFTER = {"add": "После добавления", "reactivate": "После включения"}
CRM_EMAIL_NEEDED = "Укажите почту: к компании подключена amoCRM, и без почты пользователя в ней не создать."


@dataclass(frozen=True)
class OverLimitConfirmation:
    """Adding one more active user would take the account beyond its plan: what the owner is asked first."""

    limits: Limits
    text: str
    suggestion: Plan | None  # the plan that would fit after the change; None when only support can help


def connected_crm(db: Session, account_id: int) -> CrmConnection | None:
    """The account's connected CRM, if any: adding needs an e-mail and deactivating reaches it."""
    conn = db.scalars(sa.select(CrmConnection).where(CrmConnection.account_id == account_id)).first()
    return conn if conn is not None and conn.is_connected else None


def crm_email_problem(db: Session, account_id: int, email: str | None) -> str | None:
    """Refused on the form, not found later as «Отклонено: Нужен e-mail» in the CRM queue."""
    if not email and connected_crm(db, account_id) is not None:
        return CRM_EMAIL_NEEDED
    return None


def _confirmation(limits: Limits, change: str) -> OverLimitConfirmation:
    after = limits.seats_after_adding(1)
    users = plural_ru(after, "активный пользователь", "активных пользователя", "активных пользователей")
    text = f"{_AFTER[change]} в компании будет {after} {users}, а тариф позволяет {limits.seats_limit}."
    suggestion = suggest_plan(after, limits.storage_used_bytes).plan
    return OverLimitConfirmation(limits, text, suggestion)


def adding_confirmation(db: Session, account_id: int, phone: str, now: datetime) -> OverLimitConfirmation | None:
    """The confirmation adding this phone needs (a new or inactive person beyond the plan's seats), else None."""
    existing = find_member_by_phone(db, account_id, phone)
    adds_seat = existing is None or not existing.is_active
    limits = get_limits(db, account_id, now)
    return _confirmation(limits, "add") if adds_seat and limits.exceeded_by_adding(1) else None


def reactivating_confirmation(
    db: Session, account_id: int, *, is_active: bool, now: datetime
) -> OverLimitConfirmation | None:
    """The confirmation switching an inactive user back on needs beyond the plan's seats, else None."""
    limits = get_limits(db, account_id, now)
    return _confirmation(limits, "reactivate") if not is_active and limits.exceeded_by_adding(1) else None


def add_member(
    db: Session, account_id: int, *, phone: str, name: str, email: str | None, role: str, actor: User, now: datetime
) -> AddResult:
    """The owner adds a person on the team page. Does not commit."""
    return add_user(
        db,
        account_id=account_id,
        phone=phone,
        name=name,
        email=email,
        role=role,
        source=Source.PORTAL.value,
        actor=actor,
        now=now,
    )


def added_message(result: AddResult) -> str:
    """The company's own record: what it typed, never the person's profile or another company's name for them."""
    added = result.membership
    if result.created:
        return f"{added.name} ({format_phone(added.user.phone)}) теперь в команде."
    return f"{added.name} снова в команде: пользователь был отключён и теперь снова активен."
