"""Pricing a purchase for an account's state: a new plan, a renewal, an upgrade and its top-ups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from portal.billing.catalog import Plan
from portal.billing.custom_plans import get_plan_for_account
from portal.billing.display import months_ru
from portal.billing.models import OrderKind
from portal.billing.pricing import PeriodNotOffered, Quote, add_months, quote
from portal.billing.pricing import upgrade_charge as _upgrade_charge
from portal.billing.subscriptions import PeriodInfo, PurchaseError, SubscriptionState, get_subscription_state
from portal.timeutil import format_date

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
