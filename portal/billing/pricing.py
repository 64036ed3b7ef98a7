"""Every billing formula: period quotes, upgrade proration, period ends, the fitting plan."""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from portal.billing.catalog import ALLOWED_MONTHS, PERIODS, PLANS, Plan


def round_half_up_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, in exact integer arithmetic."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("round_half_up_div needs numerator >= 0 and denominator > 0")
    return (2 * numerator + denominator) // (2 * denominator)


class PeriodNotOffered(ValueError):
    def __init__(self, months: object) -> None:
        self.months = months
        self.allowed_months: tuple[int, ...] = ALLOWED_MONTHS
        allowed = ", ".join(str(m) for m in ALLOWED_MONTHS)
        super().__init__(f"Период {months} мес. не предлагается. Можно оплатить {allowed} мес.")


@dataclass(frozen=True)
class Quote:
    plan_code: str
    months: int
    monthly_price: int
    subtotal: int  # monthly_price × months, before the discount
    discount_percent: int
    discount: int
    total: int


def discount_percent(months: int) -> int:
    """The discount for an offered period; PeriodNotOffered for any other."""
    # bool and float keys would hash equal to an offered period (6.0 == 6) and leak into money.
    if not isinstance(months, int) or isinstance(months, bool) or months not in PERIODS:
        raise PeriodNotOffered(months)
    return PERIODS[months]


def quote(plan: Plan, months: int) -> Quote:
    """The price of a plan prepaid for an offered period, discount applied."""
    percent = discount_percent(months)
    subtotal = plan.monthly_price * months
    total = round_half_up_div(subtotal * (100 - percent), 100)
    return Quote(
        plan_code=plan.code,
        months=months,
        monthly_price=plan.monthly_price,
        subtotal=subtotal,
        discount_percent=percent,
        discount=subtotal - total,
        total=total,
    )


def saving_vs_monthly(plan: Plan, months: int) -> int:
    """«Экономия»: kopecks saved against paying the monthly price for every month."""
    return quote(plan, months).discount


def prorate_upgrade(new_price_for_period: int, old_price_for_period: int, days_left: int, days_total: int) -> int:
    """What an upgrade co-termed to the current period end costs for the days still left."""
    if days_total <= 0:
        raise ValueError("Длительность оплаченного периода должна быть больше нуля.")
    if not 0 <= days_left <= days_total:
        raise ValueError("Оставшиеся дни должны быть в пределах оплаченного периода.")
    if new_price_for_period < old_price_for_period:
        raise ValueError("Переход на более дешёвый тариф не является повышением.")
    return round_half_up_div((new_price_for_period - old_price_for_period) * days_left, days_total)


def upgrade_charge(
    old_plan: Plan, new_plan: Plan, months: int, period_start: date, period_end: date, today: date
) -> int:
    """The upgrade charge for a period bought for `months`; Moscow dates, period_end exclusive."""
    days_total = (period_end - period_start).days
    days_left = min(max((period_end - today).days, 0), days_total)
    return prorate_upgrade(quote(new_plan, months).total, quote(old_plan, months).total, days_left, days_total)


def add_months(d: date, months: int) -> date:
    """Calendar months later; a day the target month lacks becomes its last day (Jan 31 + 1 → Feb 28/29)."""
    year, month_index = divmod(d.year * 12 + (d.month - 1) + months, 12)
    month = month_index + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class FitResult:
    plan: Plan | None
    contact_support: bool  # no offered plan fits: the owner must ask support for a custom plan


def fits(plan: Plan, active_users: int, storage_bytes: int) -> bool:
    """Whether the plan has enough seats and storage for this usage."""
    return plan.seats >= active_users and plan.storage_bytes >= storage_bytes


def cheapest_fitting_plan(
    active_users: int, storage_bytes: int, plans: Iterable[Plan] = PLANS, custom: Plan | None = None
) -> FitResult:
    """The lowest-priced plan (the account's custom plan included) with enough seats and storage."""
    if active_users < 0 or storage_bytes < 0:
        raise ValueError("Число пользователей и объём хранилища не могут быть отрицательными.")
    candidates = [*plans, *([custom] if custom is not None else [])]
    fitting = [plan for plan in candidates if fits(plan, active_users, storage_bytes)]
    if not fitting:
        return FitResult(plan=None, contact_support=True)
    # On equal price the roomier plan is the better offer, whatever the catalog order.
    best = min(fitting, key=lambda plan: (plan.monthly_price, -plan.seats, -plan.storage_bytes))
    return FitResult(plan=best, contact_support=False)
