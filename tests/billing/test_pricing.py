"""Quotes, proration, period ends and the fitting plan, checked against the published terms by hand."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.billing.catalog import ALLOWED_MONTHS, PLANS, Plan, get_plan, make_custom_plan
from portal.billing.pricing import (
    FitResult,
    PeriodNotOffered,
    add_months,
    cheapest_fitting_plan,
    prorate_upgrade,
    quote,
    round_half_up_div,
    saving_vs_monthly,
    upgrade_charge,
)

GiB = 1024**3
TiB = 1024**4

# Published terms, written out here: whole roubles per month, and months → discount percent.
ROUBLES_PER_MONTH = {
    "users-5": 0,
    "users-12": 990,
    "users-24": 1_990,
    "users-50": 4_990,
    "users-200": 9_990,
    "users-500": 19_990,
    "users-1000": 29_990,
}
DISCOUNT = {6: 0, 9: 5, 12: 7, 24: 10}


def plan(code: str) -> Plan:
    found = get_plan(code)
    assert found is not None
    return found


# --- quotes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("months", "total"), [(6, 594_000), (9, 846_450), (12, 1_104_840), (24, 2_138_400)])
def test_users_12_totals_from_the_terms(months: int, total: int) -> None:
    assert quote(plan("users-12"), months).total == total


def test_users_12_for_9_months_is_the_design_example() -> None:
    q = quote(plan("users-12"), 9)
    assert (q.plan_code, q.months, q.monthly_price) == ("users-12", 9, 99_000)
    assert (q.subtotal, q.discount_percent, q.discount, q.total) == (891_000, 5, 44_550, 846_450)
    assert saving_vs_monthly(plan("users-12"), 9) == 44_550


@pytest.mark.parametrize("months", [6, 9, 12, 24])
@pytest.mark.parametrize("code", list(ROUBLES_PER_MONTH))
def test_every_plan_and_period_total(code: str, months: int) -> None:
    roubles = ROUBLES_PER_MONTH[code]
    # Whole roubles: kopecks × months × (100 − d) / 100 = roubles × months × (100 − d), no rounding involved.
    expected_total = roubles * months * (100 - DISCOUNT[months])
    expected_subtotal = roubles * 100 * months
    q = quote(plan(code), months)
    assert q.total == expected_total
    assert q.subtotal == expected_subtotal
    assert q.discount == expected_subtotal - expected_total
    assert saving_vs_monthly(plan(code), months) == expected_subtotal - expected_total


def test_six_months_have_no_saving_and_the_free_plan_costs_nothing() -> None:
    assert saving_vs_monthly(plan("users-24"), 6) == 0
    for months in (6, 9, 12, 24):
        q = quote(plan("users-5"), months)
        assert (q.subtotal, q.discount, q.total) == (0, 0, 0)


def test_half_a_kopeck_rounds_up() -> None:
    # 15 000,30 ₽ × 9 × 95 % = 12 825 256,5 kopecks: half up gives ...257, banker's rounding ...256.
    custom = make_custom_plan(7, 1500, 3 * TiB, 1_500_030)
    q = quote(custom, 9)
    assert q.subtotal == 13_500_270
    assert q.total == 12_825_257
    assert q.discount == 675_013


@pytest.mark.parametrize(
    ("numerator", "denominator", "result"),
    [
        (0, 5, 0),
        (1, 3, 0),
        (2, 3, 1),
        (1, 2, 1),
        (3, 2, 2),
        (5, 2, 3),
        (7, 2, 4),
        (149, 100, 1),
        (150, 100, 2),
    ],
)
def test_round_half_up_div(numerator: int, denominator: int, result: int) -> None:
    assert round_half_up_div(numerator, denominator) == result


@pytest.mark.parametrize(("numerator", "denominator"), [(-1, 2), (1, 0), (1, -2)])
def test_round_half_up_div_rejects_what_it_cannot_round(numerator: int, denominator: int) -> None:
    with pytest.raises(ValueError):
        round_half_up_div(numerator, denominator)


@pytest.mark.parametrize("months", [3, 7, 0, -6, 1, 36, 6.0, True])
def test_periods_not_offered_are_refused_with_the_allowed_ones(months: int) -> None:
    with pytest.raises(PeriodNotOffered) as excinfo:
        quote(plan("users-12"), months)
    assert isinstance(excinfo.value, ValueError)
    assert tuple(excinfo.value.allowed_months) == (6, 9, 12, 24)
    assert "6, 9, 12, 24" in str(excinfo.value)
    with pytest.raises(PeriodNotOffered):
        saving_vs_monthly(plan("users-12"), months)


# --- proration --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p_new", "p_old", "days_left", "days_total", "charge"),
    [
        (1_000, 400, 10, 30, 200),  # 600 × 10/30
        (1_000, 0, 1, 3, 333),  # 333.33
        (1_000, 0, 2, 3, 667),  # 666.67
        (5, 0, 1, 2, 3),  # 2.5 rounds half up
        (1_000, 400, 30, 30, 600),  # the whole period left: the whole difference
        (1_000, 400, 0, 30, 0),  # nothing left
        (700, 700, 15, 30, 0),  # same price
    ],
)
def test_prorate_upgrade_by_hand(p_new: int, p_old: int, days_left: int, days_total: int, charge: int) -> None:
    assert prorate_upgrade(p_new, p_old, days_left, days_total) == charge


@pytest.mark.parametrize(
    ("p_new", "p_old", "days_left", "days_total"),
    [(1_000, 400, 31, 30), (1_000, 400, -1, 30), (1_000, 400, 0, 0), (400, 1_000, 10, 30)],
)
def test_prorate_upgrade_rejects_impossible_input(p_new: int, p_old: int, days_left: int, days_total: int) -> None:
    with pytest.raises(ValueError):
        prorate_upgrade(p_new, p_old, days_left, days_total)


def test_upgrade_12_to_24_users_half_way_through_a_year() -> None:
    # P_old = 990 × 12 × 93 = 1 104 840, P_new = 1 990 × 12 × 93 = 2 220 840, difference 1 116 000.
    # 2026-01-01 → 2027-01-01 is 365 days; from 2026-07-01, 184 are left: 1 116 000 × 184 / 365 = 562 586.30.
    start, end = date(2026, 1, 1), date(2027, 1, 1)
    assert upgrade_charge(plan("users-12"), plan("users-24"), 12, start, end, date(2026, 7, 1)) == 562_586


def test_upgrade_50_to_200_users_on_a_9_month_period() -> None:
    # P_old = 4 990 × 9 × 95 = 4 266 450, P_new = 9 990 × 9 × 95 = 8 541 450, difference 4 275 000.
    # 2026-03-15 → 2026-12-15 is 275 days.
    old, new = plan("users-50"), plan("users-200")
    start, end = date(2026, 3, 15), date(2026, 12, 15)
    assert upgrade_charge(old, new, 9, start, end, start) == 4_275_000
    assert upgrade_charge(old, new, 9, start, end, start - timedelta(days=3)) == 4_275_000
    assert upgrade_charge(old, new, 9, start, end, date(2026, 12, 14)) == 15_545  # 4 275 000 / 275 = 15 545.45
    assert upgrade_charge(old, new, 9, start, end, end) == 0
    assert upgrade_charge(old, new, 9, start, end, end + timedelta(days=10)) == 0


def test_upgrade_from_the_free_plan_pays_the_new_plan_for_the_days_left() -> None:
    # users-24 for 6 months = 1 990 × 6 × 100 = 1 194 000; 2026-01-01 → 2026-07-01 is 181 days, 100 left.
    # 1 194 000 × 100 / 181 = 659 668.508 → 659 669.
    start, end = date(2026, 1, 1), date(2026, 7, 1)
    assert upgrade_charge(plan("users-5"), plan("users-24"), 6, start, end, date(2026, 3, 23)) == 659_669


def test_upgrade_charge_refuses_downgrades_empty_periods_and_unoffered_months() -> None:
    start, end = date(2026, 1, 1), date(2027, 1, 1)
    with pytest.raises(ValueError):
        upgrade_charge(plan("users-24"), plan("users-12"), 12, start, end, date(2026, 6, 1))
    with pytest.raises(ValueError):
        upgrade_charge(plan("users-12"), plan("users-24"), 12, start, start, start)
    with pytest.raises(PeriodNotOffered):
        upgrade_charge(plan("users-12"), plan("users-24"), 3, start, end, date(2026, 6, 1))


# --- period ends ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2027, 1, 31), 1, date(2027, 2, 28)),
        (date(2026, 8, 31), 6, date(2027, 2, 28)),
        (date(2026, 1, 15), 6, date(2026, 7, 15)),
        (date(2026, 3, 31), 9, date(2026, 12, 31)),
        (date(2026, 5, 31), 9, date(2027, 2, 28)),
        (date(2027, 12, 31), 2, date(2028, 2, 29)),
        (date(2028, 2, 29), 12, date(2029, 2, 28)),
        (date(2028, 2, 29), 24, date(2030, 2, 28)),
        (date(2026, 11, 25), 24, date(2028, 11, 25)),
        (date(2026, 12, 1), 1, date(2027, 1, 1)),
        (date(2026, 4, 30), 0, date(2026, 4, 30)),
        (date(2026, 3, 31), -1, date(2026, 2, 28)),
    ],
)
def test_add_months(start: date, months: int, end: date) -> None:
    assert add_months(start, months) == end


# --- the fitting plan -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("users", "code"),
    [
        (0, "users-5"),
        (5, "users-5"),
        (6, "users-12"),
        (12, "users-12"),
        (13, "users-24"),
        (999, "users-1000"),
    ],
)
def test_cheapest_plan_by_users(users: int, code: str) -> None:
    assert cheapest_fitting_plan(users, 0) == FitResult(plan=plan(code), contact_support=False)


def test_exactly_1000_users_fit_the_largest_plan_and_1001_need_support() -> None:
    assert cheapest_fitting_plan(1000, 0).plan == plan("users-1000")
    assert cheapest_fitting_plan(1001, 0) == FitResult(plan=None, contact_support=True)


@pytest.mark.parametrize(
    ("users", "storage", "code"),
    [
        (10, 6 * GiB, "users-24"),
        (10, 5 * GiB, "users-12"),
        (3, 2 * GiB, "users-5"),
        (3, 2 * GiB + 1, "users-12"),
        (1, 25 * GiB, "users-50"),
        (100, 301 * GiB, "users-500"),
        (1, 2 * TiB, "users-1000"),
    ],
)
def test_storage_can_require_a_bigger_plan(users: int, storage: int, code: str) -> None:
    assert cheapest_fitting_plan(users, storage).plan == plan(code)


def test_storage_above_2_tb_needs_support() -> None:
    assert cheapest_fitting_plan(5, 2 * TiB + 1) == FitResult(plan=None, contact_support=True)


def test_a_custom_plan_that_fits_saves_the_trip_to_support() -> None:
    custom = make_custom_plan(7, 1500, 3 * TiB, 39_990_00)
    assert cheapest_fitting_plan(1500, 0, custom=custom) == FitResult(plan=custom, contact_support=False)
    assert cheapest_fitting_plan(10, 2 * TiB + 1, custom=custom).plan == custom
    assert cheapest_fitting_plan(1501, 0, custom=custom) == FitResult(plan=None, contact_support=True)
    assert cheapest_fitting_plan(10, 0, custom=custom).plan == plan("users-12")


def test_on_equal_price_the_roomier_plan_is_suggested() -> None:
    small = Plan("a", 10, GiB, 500_00)
    roomy = Plan("b", 20, GiB, 500_00)
    assert cheapest_fitting_plan(5, 0, plans=(small, roomy)).plan == roomy
    assert cheapest_fitting_plan(5, 0, plans=(roomy, small)).plan == roomy


def test_negative_usage_is_refused() -> None:
    with pytest.raises(ValueError):
        cheapest_fitting_plan(-1, 0)
    with pytest.raises(ValueError):
        cheapest_fitting_plan(1, -1)


# --- properties -------------------------------------------------------------------------------------------

custom_plans = st.builds(
    make_custom_plan,
    account_id=st.integers(1, 10**6),
    seats=st.integers(1001, 100_000),
    storage_bytes=st.integers(1, 100 * TiB),
    monthly_price=st.integers(1, 10**9),
)
any_plan = st.sampled_from(PLANS) | custom_plans
offered_months = st.sampled_from(ALLOWED_MONTHS)


@given(st.integers(0, 10**15), st.integers(1, 10**6))
def test_round_half_up_div_matches_exact_fractions(numerator: int, denominator: int) -> None:
    assert round_half_up_div(numerator, denominator) == floor(Fraction(numerator, denominator) + Fraction(1, 2))


@given(any_plan, offered_months)
def test_quote_totals_are_consistent(p: Plan, months: int) -> None:
    q = quote(p, months)
    for amount in (q.subtotal, q.discount, q.total):
        assert type(amount) is int
        assert amount >= 0
    assert q.subtotal == p.monthly_price * months
    assert q.subtotal - q.discount == q.total
    assert q.total <= q.subtotal


@given(any_plan, offered_months, offered_months)
def test_a_longer_period_never_costs_more_per_month(p: Plan, a: int, b: int) -> None:
    shorter, longer = sorted((a, b))
    # total_longer / longer <= total_shorter / shorter, without division.
    assert quote(p, longer).total * shorter <= quote(p, shorter).total * longer


@given(
    st.integers(0, 10**10),
    st.integers(0, 10**10),
    st.integers(1, 800).flatmap(lambda total: st.tuples(st.integers(0, total), st.just(total))),
)
def test_proration_is_between_zero_and_the_new_price(a: int, b: int, days: tuple[int, int]) -> None:
    p_old, p_new = sorted((a, b))
    days_left, days_total = days
    charge = prorate_upgrade(p_new, p_old, days_left, days_total)
    assert 0 <= charge <= p_new - p_old <= p_new


@given(
    st.sampled_from(PLANS[:-1]).flatmap(
        lambda old: st.tuples(st.just(old), st.sampled_from(PLANS[PLANS.index(old) :]))
    ),
    offered_months,
    st.dates(date(2025, 1, 1), date(2035, 12, 31)),
    st.integers(-40, 800),
)
def test_upgrade_charge_is_at_most_the_new_plans_price(
    plans: tuple[Plan, Plan], months: int, start: date, offset: int
) -> None:
    old, new = plans
    end = add_months(start, months)
    charge = upgrade_charge(old, new, months, start, end, start + timedelta(days=offset))
    assert 0 <= charge <= quote(new, months).total - quote(old, months).total


@given(st.dates(date(2000, 1, 1), date(2100, 12, 31)), st.integers(0, 120))
def test_add_months_lands_in_the_right_month(start: date, months: int) -> None:
    end = add_months(start, months)
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == months
    assert end.day <= start.day
    if start.day <= 28:
        assert end.day == start.day
    else:
        # Clamped only when the target month is too short, and then to its last day.
        assert end.day == start.day or (end + timedelta(days=1)).day == 1


@given(st.integers(0, 1200), st.integers(0, 3 * TiB))
def test_the_fitting_plan_fits_and_nothing_cheaper_does(users: int, storage: int) -> None:
    result = cheapest_fitting_plan(users, storage)
    fitting = [p for p in PLANS if p.seats >= users and p.storage_bytes >= storage]
    if result.plan is None:
        assert result.contact_support
        assert fitting == []
        assert users > 1000 or storage > 2 * TiB
    else:
        assert not result.contact_support
        assert result.plan.seats >= users and result.plan.storage_bytes >= storage
        assert all(p.monthly_price >= result.plan.monthly_price for p in fitting)
