"""The team page's service: the owner's changes to the team and the over-limit confirmation they may need first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Membership, Source, User
from portal.accounts.phone import format_phone
from portal.billing.catalog import Plan
from portal.pagination import KeysetPage
from portal.seats.crm.models import CrmConnection
from portal.seats.limits import Limits, get_limits, suggest_plan
from portal.seats.members import AddResult, add_user
from portal.seats.models import Department
from portal.seats.queries import (
    count_active_owners,
    count_members_by_status,
    departments_of,
    find_member_by_phone,
    list_members_page,
)
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


@dataclass(frozen=True)
class TeamView:
    """One page of the team and the numbers around it: the tab counts, the departments, the active owners."""

    page: KeysetPage[Membership]
    departments: dict[int, list[Department]]
    counts: dict[str, int]  # per tab: active, deactivated, left, all
    active_owners: int


def team_view(
    db: Session,
    account_id: int,
    *,
    status: str | None,
    search: str | None,
    limit: int,
    after: tuple[Any, ...] | None,
    before: tuple[Any, ...] | None,
) -> TeamView:
    page = list_members_page(db, account_id, status=status, search=search, limit=limit, after=after, before=before)
    departments = departments_of(db, [m.id for m in page.rows])
    by_status = count_members_by_status(db, account_id)
    counts = {key: by_status.get(key, 0) for key in ("active", "deactivated", "left")}
    counts["all"] = counts["active"] + counts["deactivated"] + counts["left"]
    return TeamView(page, departments, counts, count_active_owners(db, account_id))
