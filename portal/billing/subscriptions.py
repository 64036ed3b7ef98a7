"""What an account has: its periods, its state and effective plan, seats in use, the plan that fits."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus, Role, User
from portal.billing.catalog import FREE_PLAN, Plan
from portal.billing.custom_plans import list_plans_for_account
from portal.billing.models import (
    PeriodKind,
    PeriodStatus,
    Subscription,
    SubscriptionPeriod,
)
from portal.billing.pricing import (
    FitResult,
    cheapest_fitting_plan,
)
from portal.db import memo, memo_has
from portal.timeutil import msk_date

DEFAULT_GRACE_DAYS = 7


class PurchaseError(ValueError):
    """This purchase cannot be made; the message is for the person."""


class TrialError(ValueError):
    """The trial cannot be switched on; the message is for the person."""


# --- state ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodInfo:
    """A paid or trial stretch of days as pages and other features see it (not an ORM row)."""

    id: int
    kind: str  # "paid" | "trial"
    plan: Plan
    starts_on: date
    ends_on: date  # exclusive
    months: int
    term_start: date
    order_id: int | None

    @property
    def last_day(self) -> date:
        return self.ends_on - timedelta(days=1)

    @property
    def is_trial(self) -> bool:
        return self.kind == PeriodKind.TRIAL

    @classmethod
    def from_row(cls, row: SubscriptionPeriod) -> PeriodInfo:
        return cls(
            id=row.id,
            kind=row.kind,
            plan=row.as_plan(),
            starts_on=row.starts_on,
            ends_on=row.ends_on,
            months=row.months,
            term_start=row.term_start,
            order_id=row.order_id,
        )


@dataclass(frozen=True)
class SubscriptionState:
    """An account's plan on a given Moscow day, and what is already paid for after it."""

    plan: Plan
    status: str  # "free" | "trial" | "paid" | "grace"
    today: date
    period_start: date | None = None
    period_end: date | None = None  # exclusive
    paid_until: date | None = None  # last day of the paid stretch, scheduled renewals included
    trial_until: date | None = None  # last trial day
    grace_until: date | None = None  # grace: the last day the ended paid plan is kept (period_end is when it ended)
    trial_used: bool = False
    months: int | None = None
    scheduled: list[PeriodInfo] = field(default_factory=list)
    current: PeriodInfo | None = None

    @property
    def is_paid(self) -> bool:
        return self.status == "paid"

    @property
    def is_trial(self) -> bool:
        return self.status == "trial"

    @property
    def is_free(self) -> bool:
        return self.status == "free"

    @property
    def period_last_day(self) -> date | None:
        return None if self.period_end is None else self.period_end - timedelta(days=1)

    @property
    def is_grace(self) -> bool:
        """The paid period has ended, its renewal is unpaid, and the plan is kept for a few days more."""
        return self.status == "grace"

    @property
    def coverage_end(self) -> date | None:
        """Exclusive end of the current period and the paid periods that follow it without a gap."""
        if self.current is None:
            return None
        end = self.current.ends_on
        for period in self.scheduled:
            if period.starts_on == end:
                end = period.ends_on
        return end

    @property
    def days_left(self) -> int | None:
        """Whole Moscow days left including today, until the plan would fall back to the free one."""
        end = self.coverage_end
        return None if end is None else (end - self.today).days


def _active_periods(db: Session, account_id: int, *, ending_after: date) -> list[SubscriptionPeriod]:
    # The subscription state and the effective plan both start from these rows: one query per page for both.
    return memo(
        db,
        ("active_periods", account_id, ending_after),
        lambda: list(db.scalars(_active_periods_stmt(), {"account_id": account_id, "ending_after": ending_after})),
    )


# Statements every page asks are built once; only their parameters change.
@functools.cache
def _active_periods_stmt() -> sa.Select[tuple[SubscriptionPeriod]]:
    return (
        sa.select(SubscriptionPeriod)
        .where(
            SubscriptionPeriod.account_id == sa.bindparam("account_id"),
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            # Periods still running, and an ended one in its grace days: one query answers both.
            sa.or_(
                SubscriptionPeriod.ends_on > sa.bindparam("ending_after", type_=SubscriptionPeriod.ends_on.type),
                SubscriptionPeriod.grace_ends_on > sa.bindparam("ending_after"),
            ),
        )
        .order_by(SubscriptionPeriod.starts_on, SubscriptionPeriod.id)
    )


@functools.cache
def _trial_used_stmt() -> sa.Select[Any]:
    return sa.select(Subscription.trial_used_at).where(
        Subscription.account_id == sa.bindparam("account_id"), Subscription.trial_used_at.is_not(None)
    )


@functools.cache
def _effective_period_stmt() -> sa.Select[tuple[SubscriptionPeriod]]:
    today = sa.bindparam("today", type_=SubscriptionPeriod.starts_on.type)
    return (
        sa.select(SubscriptionPeriod)
        .where(
            SubscriptionPeriod.account_id == sa.bindparam("account_id"),
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.starts_on <= today,
            # A period in its grace days (an invoice for the renewal is open) keeps its plan's limits.
            sa.or_(SubscriptionPeriod.ends_on > today, SubscriptionPeriod.grace_ends_on > today),
        )
        .order_by(sa.case((SubscriptionPeriod.ends_on > today, 0), else_=1), SubscriptionPeriod.id.desc())
        .limit(1)
    )


@functools.cache
def _active_users_stmt() -> sa.Select[Any]:
    return (
        sa.select(sa.func.count())
        .select_from(Membership)
        .where(Membership.account_id == sa.bindparam("account_id"), Membership.status == MembershipStatus.ACTIVE.value)
    )


def get_subscription_state(db: Session, account_id: int, now: datetime) -> SubscriptionState:
    today = msk_date(now)
    return memo(db, ("subscription_state", account_id, today), lambda: _subscription_state(db, account_id, today))


def _subscription_state(db: Session, account_id: int, today: date) -> SubscriptionState:
    rows = _active_periods(db, account_id, ending_after=today)
    in_grace = [r for r in rows if r.ends_on <= today and r.kind == PeriodKind.PAID]
    rows = [r for r in rows if r.ends_on > today]
    trial_used = db.scalar(_trial_used_stmt(), {"account_id": account_id}) is not None
    current_row = next((r for r in rows if r.starts_on <= today < r.ends_on), None)
    scheduled = [PeriodInfo.from_row(r) for r in rows if r.starts_on > today and r.kind == PeriodKind.PAID]
    if current_row is None:
        grace = max(in_grace, key=lambda r: (r.ends_on, r.id)) if in_grace else None
        if grace is not None and grace.grace_ends_on is not None:
            return SubscriptionState(
                plan=grace.as_plan(),
                status="grace",
                today=today,
                period_start=grace.starts_on,
                period_end=grace.ends_on,
                grace_until=grace.grace_ends_on - timedelta(days=1),
                trial_used=trial_used,
                months=grace.months,
                scheduled=scheduled,
            )
        return SubscriptionState(plan=FREE_PLAN, status="free", today=today, trial_used=trial_used, scheduled=scheduled)
    current = PeriodInfo.from_row(current_row)
    if current.is_trial:
        return SubscriptionState(
            plan=current.plan,
            status="trial",
            today=today,
            period_start=current.starts_on,
            period_end=current.ends_on,
            trial_until=current.last_day,
            trial_used=trial_used,
            months=current.months,
            scheduled=scheduled,
            current=current,
        )
    state = SubscriptionState(
        plan=current.plan,
        status="paid",
        today=today,
        period_start=current.starts_on,
        period_end=current.ends_on,
        trial_used=trial_used,
        months=current.months,
        scheduled=scheduled,
        current=current,
    )
    end = state.coverage_end
    assert end is not None
    return replace(state, paid_until=end - timedelta(days=1))


def get_effective_plan(db: Session, account_id: int, now: datetime) -> Plan:
    """The plan whose limits apply right now: one indexed query, cheap enough for every page.

    A period covering today wins; otherwise an ended paid period in its grace keeps its limits."""
    today = msk_date(now)
    return memo(db, ("effective_plan", account_id, today), lambda: _effective_plan(db, account_id, today))


def _effective_plan(db: Session, account_id: int, today: date) -> Plan:
    if memo_has(db, ("active_periods", account_id, today)):
        # The page already read the running periods (the subscription state): the same choice as
        # _effective_period_stmt's, made on those rows — a period covering today first, else one in its grace.
        rows = [r for r in _active_periods(db, account_id, ending_after=today) if r.starts_on <= today]
        chosen = min(rows, key=lambda r: (0 if r.ends_on > today else 1, -r.id), default=None)
        return chosen.as_plan() if chosen is not None else FREE_PLAN
    row = db.scalars(_effective_period_stmt(), {"account_id": account_id, "today": today}).first()
    return row.as_plan() if row is not None else FREE_PLAN


def count_active_users(db: Session, account_id: int) -> int:
    """Seats in use: one count over the (account_id, status) index, once per page."""
    return memo(
        db,
        ("active_users", account_id),
        lambda: int(db.scalar(_active_users_stmt(), {"account_id": account_id}) or 0),
    )


@dataclass(frozen=True)
class Usage:
    active_users: int
    storage_used_bytes: int


def get_usage(db: Session, account: Account) -> Usage:
    return Usage(active_users=count_active_users(db, account.id), storage_used_bytes=account.storage_used_bytes or 0)


def suggest_plan(db: Session, account_id: int, usage: Usage) -> FitResult:
    """The cheapest plan (the account's custom plans included) that fits today's usage."""
    return cheapest_fitting_plan(
        usage.active_users, usage.storage_used_bytes, plans=list_plans_for_account(db, account_id)
    )


def list_owners(db: Session, account_id: int) -> list[User]:
    """Whom a member should ask about the plan."""
    return list(db.scalars(_owners_stmt(), {"account_id": account_id}))


@functools.cache
def _owners_stmt() -> sa.Select[tuple[User]]:
    return (
        sa.select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(
            Membership.account_id == sa.bindparam("account_id"),
            Membership.role == Role.OWNER.value,
            Membership.status == MembershipStatus.ACTIVE.value,
        )
        .order_by(User.id)
    )


def _insert_ignoring_conflict(db: Session, table: sa.Table, values: dict[str, Any], key: str) -> bool:
    """INSERT … ON CONFLICT DO NOTHING: a concurrent duplicate waits for the first and then does nothing."""
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the portal runs on PostgreSQL or SQLite only
        raise RuntimeError(f"unsupported database {dialect}")
    # RETURNING says whether a row went in: with the implicit RETURNING of the id, psycopg reports rowcount -1
    # (truthy) even when the conflict inserted nothing.
    stmt = insert(table).values(**values).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    return db.execute(stmt).first() is not None


_LOCKED = "billing.locked_subscriptions"


def _lock_subscription(db: Session, account_id: int, now: datetime) -> Subscription:
    """The account's subscription row, created if missing and locked: plan changes of one account queue here.

    Asked again while the (sub)transaction that locked it is still open, the row is already ours: a payment asks
    twice (can the order take money, then applying it) and a statement import pays a hundred."""
    locked = db.info.get(_LOCKED, {}).get(account_id)
    if locked is not None and locked[0].is_active:
        return locked[1]
    _insert_ignoring_conflict(
        db,
        Subscription.__table__,
        {"account_id": account_id, "created_at": now, "updated_at": now},
        "account_id",
    )
    subscription = db.scalars(
        sa.select(Subscription)
        .where(Subscription.account_id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    # The innermost transaction: rolling back to a savepoint releases the locks taken after it.
    transaction = db.get_nested_transaction() or db.get_transaction()
    db.info.setdefault(_LOCKED, {})[account_id] = (transaction, subscription)
    return subscription


def _state_dict(state: SubscriptionState) -> dict[str, Any]:
    return {
        "plan": state.plan.code,
        "status": state.status,
        "period_start": state.period_start.isoformat() if state.period_start else None,
        "period_end": state.period_end.isoformat() if state.period_end else None,
        "paid_until": state.paid_until.isoformat() if state.paid_until else None,
        "trial_until": state.trial_until.isoformat() if state.trial_until else None,
        "grace_until": state.grace_until.isoformat() if state.grace_until else None,
        "scheduled": [
            {"plan": p.plan.code, "starts_on": p.starts_on.isoformat(), "ends_on": p.ends_on.isoformat()}
            for p in state.scheduled
        ],
    }
