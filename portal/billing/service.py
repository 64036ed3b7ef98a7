"""Subscriptions and orders: what an account has paid for, what it may buy, and what happens as days pass.

Plain functions with no Flask in them. Payments and documents call in here when money arrives; billing never
imports them: they register checkout handlers and tick hooks instead.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus, Role, User
from portal.audit import record_audit
from portal.billing.catalog import FREE_PLAN, PLANS, TRIAL_MONTHS, Plan, get_plan, make_custom_plan
from portal.billing.display import months_ru
from portal.billing.models import (
    CustomPlan,
    Order,
    OrderKind,
    OrderStatus,
    OrderTopup,
    PeriodKind,
    PeriodStatus,
    Subscription,
    SubscriptionPeriod,
    plan_title_for_code,
)
from portal.billing.pricing import (
    FitResult,
    PeriodNotOffered,
    Quote,
    add_months,
    cheapest_fitting_plan,
    quote,
    round_half_up_div,
)
from portal.billing.pricing import upgrade_charge as _upgrade_charge
from portal.billing.signals import order_closed, scheduled_period_canceled, scheduled_topup_canceled
from portal.db import memo, memo_has
from portal.timeutil import format_date, msk_date, msk_midnight

log = logging.getLogger(__name__)

PAYER_TYPES = ("card", "invoice")
# A card payment is made within minutes or not at all; an invoice lives as long as documents says it is valid.
CARD_ORDER_TTL = timedelta(days=1)
INVOICE_ORDER_TTL = timedelta(days=10)  # a fallback only: documents sets the invoice's own validity
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_\-:.]{8,80}$")
# Days a paid plan is kept after its period ends while its renewal is being paid (the GRACE_DAYS setting).
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


# --- plans and usage --------------------------------------------------------------------------------------


def list_custom_plans(db: Session, account_id: int, *, include_inactive: bool = False) -> list[CustomPlan]:
    return list(db.scalars(_custom_plans_stmt(include_inactive), {"account_id": account_id}))


# Asked on every page of a signed-in company (the plan suggestion): built once, only the parameters change.
@functools.cache
def _custom_plans_stmt(include_inactive: bool) -> sa.Select[tuple[CustomPlan]]:
    q = sa.select(CustomPlan).where(CustomPlan.account_id == sa.bindparam("account_id")).order_by(CustomPlan.seats)
    return q if include_inactive else q.where(CustomPlan.active.is_(True))


def get_plan_for_account(db: Session, account_id: int | None, code: str) -> Plan | None:
    """A self-service plan, or one of this account's active custom plans; None for anything else."""
    plan = get_plan(code)
    if plan is not None:
        return plan
    if account_id is None or not code.startswith("custom-"):
        return None
    row = db.scalars(
        sa.select(CustomPlan).where(
            CustomPlan.code == code, CustomPlan.account_id == account_id, CustomPlan.active.is_(True)
        )
    ).first()
    return row.as_plan() if row is not None else None


def list_plans_for_account(db: Session, account_id: int | None) -> list[Plan]:
    plans = list(PLANS)
    if account_id is not None:
        plans.extend(
            memo(
                db,
                ("custom_plans", account_id),
                lambda: tuple(c.as_plan() for c in list_custom_plans(db, account_id)),
            )
        )
    return plans


def create_custom_plan(
    db: Session,
    *,
    actor: User | None,
    account_id: int,
    seats: int,
    storage_bytes: int,
    monthly_price: int,
    now: datetime,
) -> CustomPlan:
    """Support sets a plan over 1000 users for one account; the same seat count updates that plan's terms."""
    plan = make_custom_plan(account_id, seats, storage_bytes, monthly_price)
    row = db.scalars(sa.select(CustomPlan).where(CustomPlan.code == plan.code)).first()
    before = None
    if row is None:
        row = CustomPlan(
            account_id=account_id,
            code=plan.code,
            created_at=now,
            created_by_user_id=actor.id if actor is not None else None,
            seats=plan.seats,
            storage_bytes=plan.storage_bytes,
            monthly_price=plan.monthly_price,
            active=True,
        )
        db.add(row)
    else:
        before = _custom_dict(row)
        row.storage_bytes, row.monthly_price, row.active = plan.storage_bytes, plan.monthly_price, True
    db.flush()
    record_audit(
        db, actor=actor, account=account_id, action="billing.custom_plan_set", before=before, after=_custom_dict(row)
    )
    return row


def deactivate_custom_plan(db: Session, *, actor: User | None, account_id: int, code: str, now: datetime) -> bool:
    """The plan is no longer offered; what was already paid on it keeps its limits until it ends."""
    row = db.scalars(sa.select(CustomPlan).where(CustomPlan.code == code, CustomPlan.account_id == account_id)).first()
    if row is None or not row.active:
        return False
    row.active = False
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="billing.custom_plan_deactivated",
        before=_custom_dict(row) | {"active": True},
        after={"active": False},
    )
    return True


def _custom_dict(row: CustomPlan) -> dict[str, Any]:
    return {
        "code": row.code,
        "seats": row.seats,
        "storage_bytes": row.storage_bytes,
        "monthly_price": row.monthly_price,
        "active": row.active,
    }


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


# --- pricing a purchase -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topup:
    """A prepaid later period an upgrade raises to its plan too: the price difference for that period's months,
    by the same rule as the current period's extra payment (all its days are left, so the whole difference)."""

    period: PeriodInfo
    charge: int
    new_quote: Quote
    old_quote: Quote

    @property
    def covers(self) -> str:
        return f"период с {format_date(self.period.starts_on)} по {format_date(self.period.last_day)}"


@dataclass(frozen=True)
class Purchase:
    """What buying `plan` for `months` means for this account today, priced from the published terms."""

    plan: Plan
    months: int  # for an upgrade: the months of the purchase it is co-termed with
    kind: str  # new | renewal | upgrade | downgrade
    starts_on: date
    ends_on: date  # exclusive
    quote: Quote  # the plan's price for `months`
    proration: int  # 0 unless an upgrade
    amount: int  # what the payer owes
    current_plan: Plan
    current_quote: Quote | None = None  # upgrade: what the current plan costs for the same months
    days_left: int = 0  # upgrade: whole Moscow days from today to the period end
    days_total: int = 0  # upgrade: days of the purchase being upgraded
    topups: tuple[Topup, ...] = ()  # upgrade: prepaid later periods raised in the same order (in `amount`)
    # upgrade: prepaid later periods on a smaller plan that may be raised too (ticked or not)
    topup_offers: tuple[Topup, ...] = ()

    @property
    def last_day(self) -> date:
        return self.ends_on - timedelta(days=1)

    @property
    def topup_total(self) -> int:
        return sum(t.charge for t in self.topups)

    @property
    def covers(self) -> str:
        """What the amount pays for, in the words every page uses: «доплата до 29.05.2027»."""
        last = format_date(self.last_day)
        if self.kind == OrderKind.UPGRADE:
            later = "".join(f" и за {t.covers}" for t in self.topups)
            return f"доплата до {last}{later}"
        period = months_ru(self.months)
        if self.kind == OrderKind.RENEWAL:
            return f"продление на {period}, с {format_date(self.starts_on)} по {last}"
        if self.kind == OrderKind.DOWNGRADE:
            return f"за {period} с {format_date(self.starts_on)} по {last}"
        return f"за {period}, с {format_date(self.starts_on)} по {last}"


def price_purchase(
    db: Session,
    account_id: int,
    plan: Plan,
    months: int,
    now: datetime,
    *,
    topup_ids: frozenset[int] | None = None,
) -> Purchase:
    resolved = get_plan_for_account(db, account_id, plan.code)
    if resolved is None:
        raise PurchaseError(f"Тариф «{plan.code}» недоступен для этой компании.")
    return price_for_state(get_subscription_state(db, account_id, now), resolved, months, topup_ids=topup_ids)


def _topup_offers(state: SubscriptionState, plan: Plan) -> tuple[Topup, ...]:
    """The prepaid later periods on a cheaper plan that an upgrade to `plan` may raise too, priced like the
    current period's extra payment (pricing.upgrade_charge) with every one of their days still ahead."""
    offers = []
    for period in state.scheduled:
        if period.plan.monthly_price >= plan.monthly_price:
            continue
        charge = _upgrade_charge(period.plan, plan, period.months, period.term_start, period.ends_on, state.today)
        if charge > 0:
            offers.append(Topup(period, charge, quote(plan, period.months), quote(period.plan, period.months)))
    return tuple(offers)


def price_for_state(
    state: SubscriptionState, plan: Plan, months: int, *, topup_ids: frozenset[int] | None = None
) -> Purchase:
    """The purchase priced against a state already read (the plans page prices every card from one read).

    An upgrade raises the prepaid later periods named by `topup_ids` too (None: every one it can, which is what
    checkout offers ticked, so every page quotes that figure)."""
    if plan.is_free:
        raise PurchaseError("Бесплатный тариф не нужно оплачивать: он действует, когда нет оплаченного периода.")
    try:
        q = quote(plan, months)
    except PeriodNotOffered as exc:
        raise PurchaseError(str(exc)) from None
    today = state.today
    if not state.is_paid or state.current is None:
        # From free, after an expiry, or during a trial (which the purchase ends): the period starts today.
        return Purchase(plan, months, OrderKind.NEW, today, add_months(today, months), q, 0, q.total, state.plan)
    current = state.current
    end = state.coverage_end or current.ends_on
    if plan.code == current.plan.code:
        return Purchase(plan, months, OrderKind.RENEWAL, end, add_months(end, months), q, 0, q.total, current.plan)
    if plan.monthly_price > current.plan.monthly_price:
        # Co-termed: priced for the months of the purchase being upgraded, whatever period was asked for.
        new_q = quote(plan, current.months)
        charge = _upgrade_charge(current.plan, plan, current.months, current.term_start, current.ends_on, today)
        if charge <= 0:
            raise PurchaseError("Доплата за переход слишком мала для расчёта. Обратитесь в поддержку.")
        offers = _topup_offers(state, plan)
        topups = tuple(t for t in offers if topup_ids is None or t.period.id in topup_ids)
        return Purchase(
            plan,
            current.months,
            OrderKind.UPGRADE,
            today,
            current.ends_on,
            new_q,
            charge,
            charge + sum(t.charge for t in topups),
            current.plan,
            current_quote=quote(current.plan, current.months),
            days_left=(current.ends_on - today).days,
            days_total=(current.ends_on - current.term_start).days,
            topups=topups,
            topup_offers=offers,
        )
    return Purchase(plan, months, OrderKind.DOWNGRADE, end, add_months(end, months), q, 0, q.total, current.plan)


# --- orders -----------------------------------------------------------------------------------------------


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


def _order_by_key(db: Session, key: str) -> Order | None:
    return db.scalars(
        sa.select(Order).where(Order.idempotency_key == key).execution_options(populate_existing=True)
    ).first()


def list_order_topups(db: Session, order_id: int) -> list[OrderTopup]:
    return list(db.scalars(sa.select(OrderTopup).where(OrderTopup.order_id == order_id).order_by(OrderTopup.starts_on)))


def _same_order(
    db: Session,
    order: Order,
    *,
    account_id: int,
    plan_code: str,
    months: int,
    payer_type: str,
    topup_ids: frozenset[int] | None = None,
) -> Order:
    if order.account_id != account_id:
        raise PurchaseError("Этот заказ оформлен в другой компании. Откройте страницу оплаты заново.")
    same_months = order.kind == OrderKind.UPGRADE or order.months == months
    same_topups = (
        topup_ids is None
        or order.kind != OrderKind.UPGRADE
        or {t.period_id for t in list_order_topups(db, order.id)} == set(topup_ids)
    )
    if order.plan_code != plan_code or order.payer_type != payer_type or not same_months or not same_topups:
        raise PurchaseError(
            "Этот заказ уже оформлен на другие условия. Откройте страницу оплаты заново, чтобы оформить новый."
        )
    return order


def create_order(
    db: Session,
    *,
    actor: User | None,
    account_id: int,
    plan_code: str,
    months: int,
    payer_type: str,
    license_version: str,
    idempotency_key: str,
    now: datetime,
    topup_ids: frozenset[int] | None = None,
    defer_days: int | None = None,
) -> Order:
    """A pending order priced by the server; the same key gives the same order. The caller commits.

    An upgrade also raises the prepaid later periods in `topup_ids` (None: every one it can). A smaller plan that
    begins more than `defer_days` days from today is scheduled unpaid: nothing is asked for until the tick opens
    its payment `defer_days` before it begins (the SCHEDULED_PAYMENT_DAYS setting; None: pay now)."""
    if not isinstance(idempotency_key, str) or not IDEMPOTENCY_KEY_RE.match(idempotency_key):
        raise PurchaseError("Форма оплаты повреждена. Откройте страницу оплаты заново.")
    if payer_type not in PAYER_TYPES:
        raise PurchaseError("Выберите способ оплаты.")
    if not license_version:
        raise PurchaseError("Нужно принять условия лицензионного договора.")
    existing = _order_by_key(db, idempotency_key)
    if existing is not None:
        return _same_order(
            db,
            existing,
            account_id=account_id,
            plan_code=plan_code,
            months=months,
            payer_type=payer_type,
            topup_ids=topup_ids,
        )

    plan = get_plan_for_account(db, account_id, plan_code)
    if plan is None:
        raise PurchaseError(f"Тариф «{plan_code}» не найден.")
    purchase = price_purchase(db, account_id, plan, months, now, topup_ids=topup_ids)
    ttl = CARD_ORDER_TTL if payer_type == "card" else INVOICE_ORDER_TTL
    opens_on = payment_opens_on(purchase, msk_date(now), defer_days)
    deferred = opens_on is not None
    values = {
        "account_id": account_id,
        "plan_code": plan.code,
        "months": purchase.months,
        "kind": purchase.kind,
        "monthly_price": plan.monthly_price,
        "subtotal": purchase.quote.subtotal,
        "discount_percent": purchase.quote.discount_percent,
        "discount": purchase.quote.discount,
        "proration": purchase.proration,
        "amount": purchase.amount,
        "starts_on": purchase.starts_on,
        "ends_on": purchase.ends_on,
        "payer_type": payer_type,
        "status": OrderStatus.SCHEDULED if deferred else OrderStatus.PENDING,
        "idempotency_key": idempotency_key,
        "license_version": license_version,
        "license_accepted_at": now,
        "created_by_user_id": actor.id if actor is not None else None,
        "created_at": now,
        "expires_at": None if deferred else now + ttl,
        "opens_on": opens_on,
    }
    inserted = _insert_ignoring_conflict(db, Order.__table__, values, "idempotency_key")
    order = _order_by_key(db, idempotency_key)
    assert order is not None
    if not inserted:  # someone else's request with the same key won the race
        return _same_order(
            db,
            order,
            account_id=account_id,
            plan_code=plan_code,
            months=months,
            payer_type=payer_type,
            topup_ids=topup_ids,
        )
    for topup in purchase.topups:
        db.add(
            OrderTopup(
                order_id=order.id,
                period_id=topup.period.id,
                old_plan_code=topup.period.plan.code,
                starts_on=topup.period.starts_on,
                ends_on=topup.period.ends_on,
                months=topup.period.months,
                amount=topup.charge,
            )
        )
    db.flush()
    _replace_scheduled_orders(db, order, actor=actor, now=now)
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="billing.order_created",
        after=_order_dict(order, list_order_topups(db, order.id)),
    )
    return order


def payment_opens_on(purchase: Purchase, today: date, defer_days: int | None) -> date | None:
    """When a smaller plan's payment opens if it is scheduled unpaid (its start is more than `defer_days` away);
    None when it is paid now."""
    if purchase.kind != OrderKind.DOWNGRADE or defer_days is None:
        return None
    if (purchase.starts_on - today).days <= defer_days:
        return None
    return purchase.starts_on - timedelta(days=defer_days)


def _replace_scheduled_orders(db: Session, order: Order, *, actor: User | None, now: datetime) -> None:
    """Another plan chosen for the day a smaller plan was scheduled (unpaid) to begin: the new choice replaces it."""
    if order.kind not in (OrderKind.DOWNGRADE, OrderKind.RENEWAL):
        return
    earlier = db.scalars(
        sa.select(Order)
        .where(
            Order.account_id == order.account_id,
            Order.status == OrderStatus.SCHEDULED,
            Order.starts_on == order.starts_on,
            Order.id != order.id,
        )
        .with_for_update()
    ).all()
    for old in earlier:
        old.status = OrderStatus.CANCELED
        reason = f"Заменён заказом № {order.id}: с {format_date(order.starts_on)} выбран тариф «{order.plan_title}»."
        record_audit(
            db,
            actor=actor,
            account=old.account_id,
            action="billing.order_canceled",
            before={"order_id": old.id, "status": OrderStatus.SCHEDULED},
            after={"order_id": old.id, "status": OrderStatus.CANCELED},
            reason=reason,
        )
        order_closed.send(old, db=db, reason=reason, now=now)


def list_scheduled_orders(db: Session, account_id: int) -> list[Order]:
    """Smaller plans scheduled unpaid, soonest first: the dashboard shows when each begins and when it is paid."""
    return list(
        db.scalars(
            sa.select(Order)
            .where(Order.account_id == account_id, Order.status == OrderStatus.SCHEDULED)
            .order_by(Order.starts_on, Order.id)
        )
    )


def _order_dict(order: Order, topups: list[OrderTopup] | None = None) -> dict[str, Any]:
    extra = {}
    if topups:
        extra["topups"] = [
            {"starts_on": t.starts_on.isoformat(), "ends_on": t.ends_on.isoformat(), "amount": t.amount} for t in topups
        ]
    return extra | {
        "order_id": order.id,
        "plan": order.plan_code,
        "months": order.months,
        "kind": order.kind,
        "amount": order.amount,
        "proration": order.proration,
        "starts_on": order.starts_on.isoformat(),
        "ends_on": order.ends_on.isoformat(),
        "payer_type": order.payer_type,
        "status": order.status,
        "license_version": order.license_version,
    }


def get_order(db: Session, account_id: int, order_id: int) -> Order | None:
    return db.scalars(sa.select(Order).where(Order.id == order_id, Order.account_id == account_id)).first()


def list_orders(
    db: Session, account_id: int, *, statuses: tuple[str, ...] | None = None, limit: int = 50
) -> list[Order]:
    return list(db.scalars(_orders_stmt(tuple(statuses or ()), limit), {"account_id": account_id}))


@functools.cache
def _orders_stmt(statuses: tuple[str, ...], limit: int) -> sa.Select[tuple[Order]]:
    """The dashboard's and support's order lists: a handful of shapes, each built once."""
    q = sa.select(Order).where(Order.account_id == sa.bindparam("account_id")).order_by(Order.id.desc()).limit(limit)
    return q.where(Order.status.in_(statuses)) if statuses else q


def cancel_order(
    db: Session, order_id: int, *, actor: User | None, reason: str, now: datetime, account_id: int | None = None
) -> bool:
    """A pending order is canceled (True); one already canceled or expired is left alone (False)."""
    q = sa.select(Order).where(Order.id == order_id)
    if account_id is not None:
        q = q.where(Order.account_id == account_id)
    order = db.scalars(q.with_for_update().execution_options(populate_existing=True)).first()
    if order is None:
        raise PurchaseError("Заказ не найден.")
    if order.status == OrderStatus.PAID:
        raise PurchaseError("Заказ уже оплачен, его нельзя отменить. Для возврата обратитесь в поддержку.")
    if order.status not in (OrderStatus.PENDING, OrderStatus.SCHEDULED):
        return False
    previous = order.status
    order.status = OrderStatus.CANCELED
    record_audit(
        db,
        actor=actor,
        account=order.account_id,
        action="billing.order_canceled",
        before={"order_id": order.id, "status": previous},
        after={"order_id": order.id, "status": OrderStatus.CANCELED},
        reason=reason,
    )
    order_closed.send(order, db=db, reason=reason, now=now)
    return True


# --- scheduled changes ------------------------------------------------------------------------------------


def get_scheduled_period(db: Session, account_id: int, period_id: int, now: datetime) -> PeriodInfo | None:
    """A paid period of this account that has not begun yet (None for another company's, a begun or a gone one)."""
    row = db.scalars(
        sa.select(SubscriptionPeriod).where(
            SubscriptionPeriod.id == period_id,
            SubscriptionPeriod.account_id == account_id,
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.kind == PeriodKind.PAID,
            SubscriptionPeriod.starts_on > msk_date(now),
        )
    ).first()
    return PeriodInfo.from_row(row) if row is not None else None


def cancel_scheduled_period(
    db: Session, *, account_id: int, period_id: int, actor: User | None, reason: str, now: datetime
) -> Order | None:
    """Cancel a paid period before it begins: it is marked replaced and never takes effect; the money paid for it
    goes back to the account's balance (payments) and no УПД is formed for it (documents). Returns its order.

    Only the last scheduled period can go, so no gap opens between two paid ones. Does not commit."""
    info = get_scheduled_period(db, account_id, period_id, now)
    if info is None:
        raise PurchaseError("Этот период уже начался или отменён: отменить его нельзя.")
    # Lock order (see payments.ledger): the order, then the subscription.
    order = None
    if info.order_id is not None:
        order = db.scalars(
            sa.select(Order)
            .where(Order.id == info.order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()
    _lock_subscription(db, account_id, now)
    row = db.scalars(
        sa.select(SubscriptionPeriod)
        .where(SubscriptionPeriod.id == period_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    today = msk_date(now)
    if row.status != PeriodStatus.ACTIVE or row.starts_on <= today:
        raise PurchaseError("Этот период уже начался или отменён: отменить его нельзя.")
    later = db.scalars(
        sa.select(SubscriptionPeriod).where(
            SubscriptionPeriod.account_id == account_id,
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.kind == PeriodKind.PAID,
            SubscriptionPeriod.starts_on >= row.ends_on,
        )
    ).first()
    if later is not None:
        raise PurchaseError(
            f"После этого периода уже оплачен следующий (с {format_date(later.starts_on)}): сначала отмените его."
        )
    before = get_subscription_state(db, account_id, now)
    row.status = PeriodStatus.REPLACED
    row.replaced_on = today
    row.ended_at = now
    db.flush()
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="billing.scheduled_change_canceled",
        before=_state_dict(before) | {"order_id": info.order_id},
        after=_state_dict(get_subscription_state(db, account_id, now)) | {"order_id": info.order_id},
        reason=reason,
    )
    if order is not None:
        scheduled_period_canceled.send(order, db=db, reason=reason, now=now)
    # An unpaid upgrade that would raise this period can no longer be applied: withdrawn now, its invoice annulled.
    waiting = db.scalars(
        sa.select(Order)
        .join(OrderTopup, OrderTopup.order_id == Order.id)
        .where(OrderTopup.period_id == period_id, Order.status == OrderStatus.PENDING)
        .with_for_update(of=Order, skip_locked=True)
    ).all()
    for pending in waiting:
        pending.status = OrderStatus.CANCELED
        why = f"Оплаченный период с {format_date(row.starts_on)}, который повышал заказ, отменён."
        record_audit(
            db,
            actor=actor,
            account=account_id,
            action="billing.order_canceled",
            before={"order_id": pending.id, "status": OrderStatus.PENDING},
            after={"order_id": pending.id, "status": OrderStatus.CANCELED},
            reason=why,
        )
        order_closed.send(pending, db=db, reason=why, now=now)
    # An upgrade that raised this period paid its part for days that will now never come: that part goes back too.
    raised = db.scalars(
        sa.select(OrderTopup)
        .where(OrderTopup.new_period_id == period_id, OrderTopup.released_at.is_(None))
        .with_for_update()
    ).all()
    for topup in raised:
        topup.released_at = now
        upgrade = db.get(Order, topup.order_id)
        if upgrade is not None and upgrade.status == OrderStatus.PAID:
            scheduled_topup_canceled.send(upgrade, db=db, amount=topup.amount, reason=reason, now=now)
    return order


# --- applying money ---------------------------------------------------------------------------------------


def _lock_subscription(db: Session, account_id: int, now: datetime) -> Subscription:
    """The account's subscription row, created if missing and locked: plan changes of one account queue here."""
    _insert_ignoring_conflict(
        db,
        Subscription.__table__,
        {"account_id": account_id, "created_at": now, "updated_at": now},
        "account_id",
    )
    return db.scalars(
        sa.select(Subscription)
        .where(Subscription.account_id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def _plan_for_order(db: Session, order: Order) -> Plan | None:
    """The plan as it was bought: a custom plan withdrawn since still delivers what was paid for."""
    plan = get_plan(order.plan_code)
    if plan is not None:
        return plan
    row = db.scalars(
        sa.select(CustomPlan).where(CustomPlan.code == order.plan_code, CustomPlan.account_id == order.account_id)
    ).first()
    if row is None:
        return None
    return Plan(row.code, row.seats, row.storage_bytes, order.monthly_price, custom=True, account_id=row.account_id)


def _new_period(
    db: Session,
    *,
    account_id: int,
    kind: str,
    plan: Plan,
    starts_on: date,
    ends_on: date,
    term_start: date,
    months: int,
    order_id: int | None,
    now: datetime,
) -> SubscriptionPeriod:
    row = SubscriptionPeriod(
        account_id=account_id,
        kind=kind,
        status=PeriodStatus.ACTIVE,
        plan_code=plan.code,
        seats=plan.seats,
        storage_bytes=plan.storage_bytes,
        monthly_price=plan.monthly_price,
        custom=plan.custom,
        starts_on=starts_on,
        ends_on=ends_on,
        term_start=term_start,
        months=months,
        order_id=order_id,
        created_at=now,
        # A period that starts later is "applied" by the tick, which records the change when it happens.
        started_at=now if starts_on <= msk_date(now) else None,
    )
    db.add(row)
    return row


def _cut_short(db: Session, period: PeriodInfo, today: date, now: datetime) -> None:
    """An upgrade or a purchase during a trial takes over today: the old period ends yesterday.

    Its days before today stay as they were, so the plan of any past day is still answered correctly; a period
    that started today never took effect and is marked replaced.
    """
    row = db.get(SubscriptionPeriod, period.id)
    assert row is not None
    if row.starts_on < today:
        row.ends_on = today
    else:
        row.status = PeriodStatus.REPLACED
    row.replaced_on = today
    row.ended_at = now  # the new period's own record says what happened; the tick has nothing to add


def _raise_scheduled_period(db: Session, period_id: int, plan: Plan, today: date, now: datetime) -> SubscriptionPeriod:
    """A prepaid later period raised by an upgrade: the old row never takes effect (replaced), a new one on the
    bigger plan takes its dates. It keeps the period's own order, so cancelling it still gives that money back."""
    old = db.get(SubscriptionPeriod, period_id)
    assert old is not None
    old.status = PeriodStatus.REPLACED
    old.replaced_on = today
    old.ended_at = now
    row = _new_period(
        db,
        account_id=old.account_id,
        kind=PeriodKind.PAID,
        plan=plan,
        starts_on=old.starts_on,
        ends_on=old.ends_on,
        term_start=old.term_start,
        months=old.months,
        order_id=old.order_id,
        now=now,
    )
    db.flush()
    return row


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


def _problem(
    order: Order, plan: Plan | None, state: SubscriptionState, topups: list[OrderTopup] | None = None
) -> str | None:
    """Why money for this order cannot be applied to it now, or None."""
    if order.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED):
        return f"заказ № {order.id} {'отменён' if order.status == OrderStatus.CANCELED else 'истёк'}"
    if order.status == OrderStatus.SCHEDULED:
        return f"заказ № {order.id} ещё не выставлен к оплате: оплата откроется ближе к началу периода"
    if plan is None:
        return "тариф заказа больше не существует"
    if order.kind == OrderKind.UPGRADE:
        current = state.current
        if not (
            state.is_paid
            and current is not None
            and current.ends_on == order.ends_on
            and plan.monthly_price > current.plan.monthly_price
        ):
            return "оплаченный период, к которому относилась доплата, уже закончился или изменился"
        # Each later period it raises must still be upcoming and as it was priced: not begun, canceled or changed.
        upcoming = {p.id: p for p in state.scheduled}
        for topup in topups or ():
            period = upcoming.get(topup.period_id)
            if (
                period is None
                or (period.starts_on, period.ends_on) != (topup.starts_on, topup.ends_on)
                or period.plan.code != topup.old_plan_code
                or period.plan.monthly_price >= plan.monthly_price
            ):
                return (
                    f"оплаченный период с {format_date(topup.starts_on)}, который повышала доплата, "
                    "уже начался, отменён или изменился"
                )
    return None


def order_problem(db: Session, order: Order, now: datetime) -> str | None:
    """Can money still be applied to this (locked) order? None, or why not in Russian words. Locks the account's
    subscription, so the answer holds until the caller's transaction ends: apply_paid_order then applies it."""
    if order.status == OrderStatus.PAID:
        return f"заказ № {order.id} уже оплачен ({order.payment_reference})"
    _lock_subscription(db, order.account_id, now)
    return _problem(
        order,
        _plan_for_order(db, order),
        get_subscription_state(db, order.account_id, now),
        list_order_topups(db, order.id) if order.kind == OrderKind.UPGRADE else None,
    )


def apply_paid_order(db: Session, order_id: int, *, now: datetime, reference: str, actor: User | None = None) -> bool:
    """Money for the order has arrived: apply it exactly once (True), or do nothing if already paid (False).

    Locks the order row, then the account's subscription row, so concurrent deliveries of the same payment
    queue up and all but the first see a paid order. The caller commits together with its payment row.
    """
    order = db.scalars(
        sa.select(Order).where(Order.id == order_id).with_for_update().execution_options(populate_existing=True)
    ).first()
    if order is None:
        raise PurchaseError(f"Заказ {order_id} не найден.")
    if order.status == OrderStatus.PAID:
        return False
    previous_status = order.status
    _lock_subscription(db, order.account_id, now)
    state = get_subscription_state(db, order.account_id, now)
    today = state.today
    plan = _plan_for_order(db, order)
    topups = list_order_topups(db, order.id) if order.kind == OrderKind.UPGRADE else []
    problem = _problem(order, plan, state, topups)
    if problem is not None:
        # Money never activates what can no longer be had: the ledger asks order_problem first and keeps such
        # money on the balance, so reaching this is a caller's mistake, not a customer's situation.
        raise PurchaseError(f"Заказ № {order.id} нельзя применить: {problem}.")
    start = end = None
    if order.kind == OrderKind.UPGRADE:
        current = state.current
        if current is not None:
            _cut_short(db, current, today, now)
            start, end = today, current.ends_on
            _new_period(
                db,
                account_id=order.account_id,
                kind=PeriodKind.PAID,
                plan=plan,
                starts_on=start,
                ends_on=end,
                term_start=current.term_start,
                months=current.months,
                order_id=order.id,
                now=now,
            )
        assert plan is not None
        for topup in topups:
            topup.new_period_id = _raise_scheduled_period(db, topup.period_id, plan, today, now).id
    else:
        if state.is_paid:
            # Renewal and a smaller plan follow what is already paid; a full-price order placed from free but
            # paid after another one is appended too, so no paid day is ever lost.
            start = state.coverage_end
        else:
            start = today
            if state.is_trial and state.current is not None:
                _cut_short(db, state.current, today, now)
        assert start is not None
        end = add_months(start, order.months)
        _new_period(
            db,
            account_id=order.account_id,
            kind=PeriodKind.PAID,
            plan=plan,
            starts_on=start,
            ends_on=end,
            term_start=start,
            months=order.months,
            order_id=order.id,
            now=now,
        )
    order.status = OrderStatus.PAID
    order.paid_at = now
    order.payment_reference = reference
    if start is not None and end is not None:
        order.starts_on, order.ends_on = start, end
    db.flush()
    after = get_subscription_state(db, order.account_id, now)
    record_audit(
        db,
        actor=actor,
        account=order.account_id,
        action="billing.order_paid",
        before=_state_dict(state) | {"order_id": order.id, "order_status": previous_status},
        after=_state_dict(after) | {"order": _order_dict(order, topups), "reference": reference},
    )
    _cancel_stale_upgrades(db, order, now)
    return True


@dataclass(frozen=True)
class RightsCut:
    """What ending an order's rights early did: the days given back and the share of the price they stand for."""

    order_id: int
    cut_on: date  # the first day without the order's rights
    days_paid: int
    days_returned: int
    suggested_refund: int  # kopecks: the order's amount × returned days / paid days, half up


def _order_periods(db: Session, order: Order) -> list[SubscriptionPeriod]:
    return list(
        db.scalars(
            sa.select(SubscriptionPeriod)
            .where(SubscriptionPeriod.order_id == order.id, SubscriptionPeriod.status == PeriodStatus.ACTIVE)
            .order_by(SubscriptionPeriod.starts_on)
        )
    )


def rights_cut(db: Session, order: Order, cut_on: date) -> RightsCut:
    """Price the days of a paid order from `cut_on` on, without changing anything (staff see it before deciding).

    Refused where it would leave a hole: only the account's last paid stretch can end early, and never before the
    day it began was decided (a cut in the past would take back days already used)."""
    if order.status != OrderStatus.PAID:
        raise PurchaseError(f"Заказ № {order.id} не оплачен: прекращать нечего.")
    periods = _order_periods(db, order)
    if not periods:
        raise PurchaseError(f"У заказа № {order.id} нет действующего периода.")
    ends = max(p.ends_on for p in periods)
    if cut_on >= ends:
        raise PurchaseError(
            f"Права по заказу № {order.id} и так заканчиваются {format_date(ends - timedelta(days=1))}."
        )
    later = db.scalars(
        sa.select(SubscriptionPeriod.order_id).where(
            SubscriptionPeriod.account_id == order.account_id,
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.kind == PeriodKind.PAID,
            SubscriptionPeriod.starts_on >= ends,
        )
    ).first()
    if later is not None:
        raise PurchaseError(
            f"После заказа № {order.id} оплачен следующий период (заказ № {later}): сначала верните его."
        )
    paid_days = sum((p.ends_on - p.starts_on).days for p in periods)
    returned = sum((p.ends_on - max(p.starts_on, cut_on)).days for p in periods if p.ends_on > cut_on)
    return RightsCut(
        order_id=order.id,
        cut_on=cut_on,
        days_paid=paid_days,
        days_returned=returned,
        suggested_refund=round_half_up_div(order.amount * returned, paid_days) if paid_days else 0,
    )


def end_rights_early(
    db: Session, order: Order, cut_on: date, *, now: datetime, actor: User | None, reason: str
) -> RightsCut:
    """The order's rights end the day before `cut_on` (a refund of the days after it follows in the ledger).

    The account falls back to what it would have without those days, as the tick handles any period's end."""
    if cut_on < msk_date(now):
        raise PurchaseError("Права нельзя прекратить задним числом: выберите сегодняшний день или позже.")
    _lock_subscription(db, order.account_id, now)
    cut = rights_cut(db, order, cut_on)
    before = get_subscription_state(db, order.account_id, now)
    for period in _order_periods(db, order):
        if period.ends_on <= cut_on:
            continue
        if period.starts_on >= cut_on:
            period.status = PeriodStatus.REPLACED  # never takes effect
            period.replaced_on = cut_on
        else:
            period.ends_on = cut_on
    db.flush()
    after = get_subscription_state(db, order.account_id, now)
    record_audit(
        db,
        actor=actor,
        account=order.account_id,
        action="billing.rights_ended",
        before=_state_dict(before) | {"order_id": order.id},
        after=_state_dict(after) | {"order_id": order.id, "cut_on": cut_on.isoformat(), "days": cut.days_returned},
        reason=reason or None,
    )
    return cut


def _cancel_stale_upgrades(db: Session, paid: Order, now: datetime) -> None:
    """Other unpaid upgrade orders were priced against the plan that has just changed: withdraw them.

    SKIP LOCKED: an order being paid at this very moment is left to its own payment (which, if it arrives,
    is kept and flagged for support), rather than making two payments wait on each other.
    """
    stale = db.scalars(
        sa.select(Order)
        .where(
            Order.account_id == paid.account_id,
            Order.status == OrderStatus.PENDING,
            Order.kind == OrderKind.UPGRADE,
            Order.id != paid.id,
        )
        .with_for_update(skip_locked=True)
    ).all()
    for order in stale:
        order.status = OrderStatus.CANCELED
        reason = f"Тариф изменился после оформления (оплачен заказ № {paid.id}): доплата больше не актуальна."
        record_audit(
            db,
            actor=None,
            account=order.account_id,
            action="billing.order_canceled",
            before={"order_id": order.id, "status": OrderStatus.PENDING},
            after={"order_id": order.id, "status": OrderStatus.CANCELED},
            reason=reason,
        )
        order_closed.send(order, db=db, reason=reason, now=now)


# --- trial ------------------------------------------------------------------------------------------------


def start_trial(db: Session, *, actor: User | None, account_id: int, plan_code: str, now: datetime) -> PeriodInfo:
    """One free month of any plan, once per account; support switches it on at the owner's request."""
    plan = get_plan_for_account(db, account_id, plan_code)
    if plan is None:
        raise TrialError(f"Тариф «{plan_code}» не найден.")
    if plan.is_free:
        raise TrialError("Бесплатный тариф не нужно пробовать: он действует всегда, когда нет оплаты.")
    subscription = _lock_subscription(db, account_id, now)
    if subscription.trial_used_at is not None:
        raise TrialError(
            f"Пробный период уже был включён {format_date(subscription.trial_used_at)}: он предоставляется один раз."
        )
    state = get_subscription_state(db, account_id, now)
    if state.is_paid:
        raise TrialError("Во время оплаченного периода пробный период не включается.")
    today = state.today
    row = _new_period(
        db,
        account_id=account_id,
        kind=PeriodKind.TRIAL,
        plan=plan,
        starts_on=today,
        ends_on=add_months(today, TRIAL_MONTHS),
        term_start=today,
        months=TRIAL_MONTHS,
        order_id=None,
        now=now,
    )
    subscription.trial_used_at = now
    subscription.updated_at = now
    db.flush()
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="billing.trial_started",
        before=_state_dict(state),
        after=_state_dict(get_subscription_state(db, account_id, now)),
    )
    return PeriodInfo.from_row(row)


# --- registries (payments and documents plug in here) -----------------------------------------------------

CheckoutHandler = Callable[[Session, Order, Any], str]
# `precheck(db, account_id) -> message | None`: why this payer type cannot start now, asked before any order exists.
CheckoutPrecheck = Callable[[Session, int], str | None]
TickHook = Callable[[Session, datetime], list[str]]
GraceHook = Callable[[Session, SubscriptionPeriod], "str | None"]


@dataclass(frozen=True)
class CheckoutOption:
    payer_type: str  # the checkout's choice ("card", "sbp", "invoice")
    title: str
    handler: CheckoutHandler
    precheck: CheckoutPrecheck | None = None
    # The order's payer type when it differs from the choice: an СБП order is a card order (paid through the
    # provider, the same expiry and return page), only its payment asks for a QR code.
    pays_as: str | None = None

    @property
    def order_payer_type(self) -> str:
        return self.pays_as or self.payer_type


# The checkout lists its choices in this order; a choice not here comes last.
CHECKOUT_ORDER = ("card", "sbp", "invoice")


_CHECKOUT: dict[str, CheckoutOption] = {}
_TICK_HOOKS: dict[str, TickHook] = {}
_GRACE_HOOKS: dict[str, GraceHook] = {}


def register_checkout_handler(
    payer_type: str,
    title: str,
    handler: CheckoutHandler,
    precheck: CheckoutPrecheck | None = None,
    *,
    pays_as: str | None = None,
) -> None:
    """`handler(db, order, actor) -> url` starts the payment of a pending order (payments: card, documents: invoice);
    `precheck` refuses before the order is created, so a refused checkout leaves nothing behind."""
    if (pays_as or payer_type) not in PAYER_TYPES:
        raise ValueError(f"unknown payer type {pays_as or payer_type!r}; expected one of {PAYER_TYPES}")
    _CHECKOUT[payer_type] = CheckoutOption(payer_type, title, handler, precheck, pays_as)


def list_checkout_options(payer_types: tuple[str, ...] = PAYER_TYPES) -> list[CheckoutOption]:
    """Registered handlers in a stable order (card first), limited to the given (order) payer types."""
    rank = {t: i for i, t in enumerate(CHECKOUT_ORDER)}
    options = [o for o in _CHECKOUT.values() if o.order_payer_type in payer_types]
    return sorted(options, key=lambda o: rank.get(o.payer_type, len(rank)))


def get_checkout_option(payer_type: str) -> CheckoutOption | None:
    return _CHECKOUT.get(payer_type)


def register_tick_hook(fn: TickHook) -> None:
    """`fn(db, now) -> [what it did]` runs at every `billing tick` after billing's own work."""
    _TICK_HOOKS[f"{fn.__module__}.{fn.__qualname__}"] = fn


def register_grace_hook(fn: GraceHook) -> None:
    """`fn(db, period) -> reason | None`: another reason than an open invoice to keep an ended period's plan in grace
    (payments: autopayment retries still running)."""
    _GRACE_HOOKS[f"{fn.__module__}.{fn.__qualname__}"] = fn


def _hooked_grace_reason(db: Session, period: SubscriptionPeriod) -> str | None:
    for fn in list(_GRACE_HOOKS.values()):
        reason = fn(db, period)
        if reason:
            return reason
    return None


# --- time passing -----------------------------------------------------------------------------------------


def _lock_due(db: Session, q: sa.Select[Any]) -> Any:
    # SKIP LOCKED: ticks on several servers share the work instead of waiting on (and repeating) each other.
    return db.scalars(q.with_for_update(skip_locked=True).execution_options(populate_existing=True))


def _account_label(db: Session, account_id: int) -> str:
    account = db.get(Account, account_id)
    return f"{account.name} (№ {account_id})" if account is not None else f"аккаунт № {account_id}"


def _open_renewal_invoice(db: Session, period: SubscriptionPeriod) -> Order | None:
    """An invoice for the days after this period, issued before it ended and unpaid at its end: grace is owed.

    An expired one counts if it was still valid when the period ended (a tick that ran late must not decide
    differently from one that ran on time)."""
    ended = msk_midnight(period.ends_on)
    return db.scalars(
        sa.select(Order)
        .where(
            Order.account_id == period.account_id,
            Order.payer_type == "invoice",
            Order.starts_on == period.ends_on,
            Order.created_at < ended,
            sa.or_(
                Order.status == OrderStatus.PENDING,
                sa.and_(Order.status == OrderStatus.EXPIRED, Order.expires_at > ended),
            ),
        )
        .order_by(Order.id)
        .limit(1)
    ).first()


def _has_current_period(db: Session, account_id: int, today: date) -> bool:
    return bool(
        db.scalar(
            sa.select(sa.func.count())
            .select_from(SubscriptionPeriod)
            .where(
                SubscriptionPeriod.account_id == account_id,
                SubscriptionPeriod.status == PeriodStatus.ACTIVE,
                SubscriptionPeriod.starts_on <= today,
                SubscriptionPeriod.ends_on > today,
            )
        )
    )


def _billing_tick(db: Session, now: datetime, grace_days: int = DEFAULT_GRACE_DAYS) -> list[str]:
    today = msk_date(now)
    done: list[str] = []

    started = _lock_due(
        db,
        sa.select(SubscriptionPeriod)
        .where(
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.started_at.is_(None),
            SubscriptionPeriod.starts_on <= today,
        )
        .order_by(SubscriptionPeriod.starts_on, SubscriptionPeriod.id),
    ).all()
    for row in started:
        row.started_at = now
        previous = db.scalars(
            sa.select(SubscriptionPeriod).where(
                SubscriptionPeriod.account_id == row.account_id,
                SubscriptionPeriod.status == PeriodStatus.ACTIVE,
                SubscriptionPeriod.ends_on == row.starts_on,
            )
        ).first()
        renewal = previous is not None and previous.plan_code == row.plan_code
        action = "billing.renewal_started" if renewal else "billing.scheduled_change_applied"
        record_audit(
            db,
            actor=None,
            account=row.account_id,
            action=action,
            before={"plan": previous.plan_code if previous is not None else FREE_PLAN.code},
            after={"plan": row.plan_code, "starts_on": row.starts_on.isoformat(), "ends_on": row.ends_on.isoformat()},
        )
        verb = "продлён" if renewal else "сменился на"
        what = plan_title_for_code(row.plan_code)
        done.append(
            f"{_account_label(db, row.account_id)}: с {format_date(row.starts_on)} тариф {verb} «{what}» "
            f"по {format_date(row.last_day)}"
        )

    ended = _lock_due(
        db,
        sa.select(SubscriptionPeriod)
        .where(
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.ended_at.is_(None),
            SubscriptionPeriod.ends_on <= today,
        )
        .order_by(SubscriptionPeriod.ends_on, SubscriptionPeriod.id),
    ).all()
    for row in ended:
        row.ended_at = now
        successor = db.scalar(
            sa.select(sa.func.count())
            .select_from(SubscriptionPeriod)
            .where(
                SubscriptionPeriod.account_id == row.account_id,
                SubscriptionPeriod.status == PeriodStatus.ACTIVE,
                SubscriptionPeriod.starts_on == row.ends_on,
            )
        )
        if successor:
            continue  # the next period's start is the change, recorded above
        invoice = _open_renewal_invoice(db, row) if row.kind == PeriodKind.PAID and grace_days > 0 else None
        hooked = (
            _hooked_grace_reason(db, row) if invoice is None and row.kind == PeriodKind.PAID and grace_days else None
        )
        if hooked is not None:
            row.grace_ends_on = row.ends_on + timedelta(days=grace_days)
            grace_last = row.grace_ends_on - timedelta(days=1)
            record_audit(
                db,
                actor=None,
                account=row.account_id,
                action="billing.grace_started",
                before={"plan": row.plan_code, "kind": row.kind, "last_day": row.last_day.isoformat()},
                after={"plan": row.plan_code, "grace_until": grace_last.isoformat()},
                reason=hooked,
            )
            done.append(
                f"{_account_label(db, row.account_id)}: оплаченный период «{plan_title_for_code(row.plan_code)}» "
                f"закончился {format_date(row.last_day)}: {hooked[:1].lower()}{hooked[1:]} "
                f"Тариф сохраняется по {format_date(grace_last)}"
            )
            continue
        if invoice is not None:
            row.grace_ends_on = row.ends_on + timedelta(days=grace_days)
            grace_last = row.grace_ends_on - timedelta(days=1)
            record_audit(
                db,
                actor=None,
                account=row.account_id,
                action="billing.grace_started",
                before={"plan": row.plan_code, "kind": row.kind, "last_day": row.last_day.isoformat()},
                after={"plan": row.plan_code, "grace_until": grace_last.isoformat(), "order_id": invoice.id},
                reason=f"Счёт по заказу № {invoice.id} на продление не оплачен.",
            )
            done.append(
                f"{_account_label(db, row.account_id)}: оплаченный период «{plan_title_for_code(row.plan_code)}» "
                f"закончился {format_date(row.last_day)}, счёт по заказу № {invoice.id} не оплачен: "
                f"тариф сохраняется по {format_date(grace_last)}"
            )
            continue
        what = "Пробный период" if row.kind == PeriodKind.TRIAL else "Оплаченный период"
        record_audit(
            db,
            actor=None,
            account=row.account_id,
            action="billing.trial_expired" if row.kind == PeriodKind.TRIAL else "billing.expired",
            before={"plan": row.plan_code, "kind": row.kind, "last_day": row.last_day.isoformat()},
            after={"plan": FREE_PLAN.code},
        )
        done.append(
            f"{_account_label(db, row.account_id)}: {what.lower()} «{plan_title_for_code(row.plan_code)}» "
            f"закончился {format_date(row.last_day)}, действует бесплатный тариф"
        )

    graced = _lock_due(
        db,
        sa.select(SubscriptionPeriod)
        .where(
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.grace_ended_at.is_(None),
            SubscriptionPeriod.grace_ends_on <= today,
        )
        .order_by(SubscriptionPeriod.grace_ends_on, SubscriptionPeriod.id),
    ).all()
    for row in graced:
        row.grace_ended_at = now
        if _has_current_period(db, row.account_id, today):
            continue  # the renewal was paid during the grace: its period's start is the record
        assert row.grace_ends_on is not None
        record_audit(
            db,
            actor=None,
            account=row.account_id,
            action="billing.expired",
            before={
                "plan": row.plan_code,
                "kind": row.kind,
                "grace_until": (row.grace_ends_on - timedelta(days=1)).isoformat(),
            },
            after={"plan": FREE_PLAN.code},
            reason="Льготный период закончился, счёт на продление не оплачен.",
        )
        done.append(
            f"{_account_label(db, row.account_id)}: льготный период тарифа «{plan_title_for_code(row.plan_code)}» "
            f"закончился {format_date(row.grace_ends_on - timedelta(days=1))}, действует бесплатный тариф"
        )

    expired = _lock_due(
        db,
        sa.select(Order)
        .where(Order.status == OrderStatus.PENDING, Order.expires_at.is_not(None), Order.expires_at <= now)
        .order_by(Order.id),
    ).all()
    for order in expired:
        order.status = OrderStatus.EXPIRED
        record_audit(
            db,
            actor=None,
            account=order.account_id,
            action="billing.order_expired",
            before={"order_id": order.id, "status": OrderStatus.PENDING},
            after={"order_id": order.id, "status": OrderStatus.EXPIRED},
            reason="Заказ не оплачен в срок.",
        )
        order_closed.send(order, db=db, reason="Заказ не оплачен в срок.", now=now)
        done.append(f"{_account_label(db, order.account_id)}: заказ № {order.id} не оплачен в срок и закрыт")
    return done


def open_scheduled_orders(db: Session, now: datetime) -> list[str]:
    """A smaller plan scheduled unpaid whose start is near: its order becomes payable (pending) once.

    The row lock with SKIP LOCKED and the status change make it once only, however many ticks run at once; the
    invoice for an invoice payer is issued by documents' tick hook right after, and the notices tell the people.
    Unpaid by its first day, the order lapses then and the account falls to the usual rules."""
    today = msk_date(now)
    due = _lock_due(
        db,
        sa.select(Order)
        .where(Order.status == OrderStatus.SCHEDULED, Order.opens_on <= today)
        .order_by(Order.opens_on, Order.id),
    ).all()
    done = []
    for order in due:
        order.status = OrderStatus.PENDING
        ttl_end = msk_midnight(order.starts_on)
        order.expires_at = ttl_end if ttl_end > now else now + CARD_ORDER_TTL
        record_audit(
            db,
            actor=None,
            account=order.account_id,
            action="billing.scheduled_order_opened",
            before={"order_id": order.id, "status": OrderStatus.SCHEDULED},
            after={"order_id": order.id, "status": OrderStatus.PENDING, "amount": order.amount},
        )
        done.append(
            f"{_account_label(db, order.account_id)}: заказ № {order.id} («{order.plan_title}» с "
            f"{format_date(order.starts_on)}) открыт для оплаты"
        )
    return done


def tick(db: Session, now: datetime, *, grace_days: int = DEFAULT_GRACE_DAYS) -> list[str]:
    """Scheduled work: periods that started or ended (or whose grace ended), unpaid orders, then every hook.

    Commits after billing's own work and after each hook, so one failing hook neither undoes nor blocks the rest.
    Idempotent: every change is marked on its row, so a second run (or a run on another server) finds nothing.
    """
    done = _billing_tick(db, now, grace_days)
    done += open_scheduled_orders(db, now)
    db.commit()
    for name, hook in list(_TICK_HOOKS.items()):
        try:
            done.extend(hook(db, now) or [])
            db.commit()
        except Exception as exc:  # noqa: BLE001 - a hook's failure is reported, the tick goes on
            db.rollback()
            log.exception("billing tick hook %s failed", name)
            done.append(f"Ошибка в {name}: {exc}")
    return done
