"""Seats and storage used against the plan's limits, why an account is over, and the plan that would fit."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus
from portal.billing.catalog import Plan
from portal.billing.custom_plans import list_plans_for_account
from portal.billing.pricing import cheapest_fitting_plan, quote, round_half_up_div
from portal.billing.subscriptions import get_effective_plan
from portal.db import memo, memo_get, memo_put
from portal.seats.errors import AccountNotFound

SUGGESTION_MONTHS = 6  # the minimum period: the price the owner sees first
STORAGE_WARNING_PERCENT = 90

REASON_SEATS = "seats"
REASON_STORAGE = "storage"


def effective_plan(db: Session, account_id: int, now: datetime) -> Plan:
    """The plan whose limits apply now: the one place where seats asks billing (one cheap query)."""
    return get_effective_plan(db, account_id, now)


@dataclass(frozen=True)
class Suggestion:
    """The cheapest self-service plan (or the account's custom plan) that fits both seats and storage."""

    plan: Plan | None
    contact_support: bool  # nothing offered fits (over 1000 users): support sets a custom plan
    price_6_months: int | None  # kopecks for the minimum period, no discount

    def as_json(self) -> dict[str, Any]:
        if self.plan is None:
            return {"code": None, "contact_support": True}
        return {"code": self.plan.code, "price_6_months": self.price_6_months}


def suggest_plan(seats: int, storage_bytes: int, custom_plans: tuple[Plan, ...] = ()) -> Suggestion:
    """What the owner should buy for this usage; «свяжитесь с поддержкой» when no offered plan fits."""
    best: Plan | None = None
    for custom in (None, *custom_plans):
        fit = cheapest_fitting_plan(seats, storage_bytes, custom=custom)
        if fit.plan is not None and (best is None or fit.plan.monthly_price < best.monthly_price):
            best = fit.plan
    if best is None:
        return Suggestion(plan=None, contact_support=True, price_6_months=None)
    return Suggestion(plan=best, contact_support=False, price_6_months=quote(best, SUGGESTION_MONTHS).total)


@dataclass(frozen=True)
class Limits:
    account_id: int
    plan: Plan
    seats_used: int
    storage_used_bytes: int
    suggestion: Suggestion | None  # None while the account fits its plan

    @property
    def seats_limit(self) -> int:
        return self.plan.seats

    @property
    def storage_limit_bytes(self) -> int:
        return self.plan.storage_bytes

    @property
    def seats_over(self) -> bool:
        return self.seats_used > self.seats_limit

    @property
    def storage_over(self) -> bool:
        return self.storage_used_bytes > self.storage_limit_bytes

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(
            reason for reason, over in ((REASON_SEATS, self.seats_over), (REASON_STORAGE, self.storage_over)) if over
        )

    @property
    def over_limit(self) -> bool:
        return self.seats_over or self.storage_over

    @property
    def storage_percent(self) -> int:
        """Percent of the quota used, rounded half up as the dashboard shows it (may exceed 100)."""
        if self.storage_limit_bytes <= 0:
            return 100 if self.storage_used_bytes else 0
        return round_half_up_div(self.storage_used_bytes * 100, self.storage_limit_bytes)

    @property
    def storage_warning(self) -> bool:
        """From 90 % of the quota, before it is exceeded: the softer notice."""
        return (
            not self.storage_over
            and self.storage_used_bytes * 100 >= self.storage_limit_bytes * STORAGE_WARNING_PERCENT
        )

    @property
    def contact_support(self) -> bool:
        return self.suggestion is not None and self.suggestion.contact_support

    def seats_after_adding(self, n: int = 1) -> int:
        return self.seats_used + n

    def exceeded_by_adding(self, n: int = 1) -> bool:
        """Whether n more active users would take the account beyond its plan's seats."""
        return self.seats_after_adding(n) > self.seats_limit

    def as_json(self) -> dict[str, Any]:
        """The body of GET /api/v1/accounts/<id>/limits."""
        return {
            "account_id": self.account_id,
            "plan": self.plan.code,
            "seats": {"used": self.seats_used, "limit": self.seats_limit},
            "storage": {"used_bytes": self.storage_used_bytes, "limit_bytes": self.storage_limit_bytes},
            "over_limit": self.over_limit,
            "reasons": list(self.reasons),
            "suggested_plan": self.suggestion.as_json() if self.suggestion is not None else None,
        }


def usage(db: Session, account_id: int) -> tuple[int, int]:
    """(active users, storage bytes) in ONE query whatever the account's size, once per page; AccountNotFound if none."""
    return memo(db, ("usage", account_id), lambda: _usage(db, account_id))


def _usage(db: Session, account_id: int) -> tuple[int, int]:
    seats = memo_get(db, ("active_users", account_id))
    if seats is not None:
        # The page counted the seats already and has the account in the session (its membership loaded it):
        # the storage figure is that row's, no second count.
        account = db.get(Account, account_id)
        if account is None:
            raise AccountNotFound()
        return int(seats), int(account.storage_used_bytes or 0)
    row = db.execute(_usage_stmt(), {"account_id": account_id}).first()
    if row is None:
        raise AccountNotFound()
    memo_put(db, ("active_users", account_id), int(row[0]))
    return int(row[0]), int(row[1] or 0)


@functools.cache
def _usage_stmt() -> sa.Select[Any]:
    # Every page of an account asks it (the over-limit warning): built once, only the parameter changes.
    account_id = sa.bindparam("account_id")
    seats = (
        sa.select(sa.func.count())
        .select_from(Membership)
        .where(Membership.account_id == account_id, Membership.status == MembershipStatus.ACTIVE.value)
        .scalar_subquery()
    )
    return sa.select(seats, Account.storage_used_bytes).where(Account.id == account_id)


def _custom_plans(db: Session, account_id: int) -> tuple[Plan, ...]:
    """The account's custom plans (over 1000 users), asked only when nothing self-service fits."""
    return tuple(p for p in list_plans_for_account(db, account_id) if p.custom)


def get_limits(db: Session, account_id: int, now: datetime) -> Limits:
    """Used / limit for seats and storage with the suggestion; a constant number of queries (2, or 3 when only a custom plan could fit)."""
    if not isinstance(account_id, int) or isinstance(account_id, bool):
        raise AccountNotFound()
    seats_used, storage_used = usage(db, account_id)
    plan = effective_plan(db, account_id, now)
    over = seats_used > plan.seats or storage_used > plan.storage_bytes
    suggestion = None
    if over:
        suggestion = suggest_plan(seats_used, storage_used)
        if suggestion.contact_support:
            customs = _custom_plans(db, account_id)
            if customs:
                suggestion = suggest_plan(seats_used, storage_used, customs)
    return Limits(
        account_id=account_id,
        plan=plan,
        seats_used=seats_used,
        storage_used_bytes=storage_used,
        suggestion=suggestion,
    )
