"""The catalog says exactly what the vendor's published terms say."""

from __future__ import annotations

import pytest

from portal.billing.catalog import (
    ALLOWED_MONTHS,
    FREE_PLAN,
    MAX_SELF_SERVICE_SEATS,
    PERIODS,
    PLANS,
    TRIAL_MONTHS,
    get_plan,
    make_custom_plan,
    plural_ru,
)

# The published table, written out here rather than imported: code, users, storage bytes, kopecks per month.
PUBLISHED = [
    ("users-5", 5, 2 * 1024**3, 0),
    ("users-12", 12, 5 * 1024**3, 990_00),
    ("users-24", 24, 24 * 1024**3, 1_990_00),
    ("users-50", 50, 100 * 1024**3, 4_990_00),
    ("users-200", 200, 300 * 1024**3, 9_990_00),
    ("users-500", 500, 1 * 1024**4, 19_990_00),
    ("users-1000", 1000, 2 * 1024**4, 29_990_00),
]


def test_catalog_is_the_published_table_in_ascending_order() -> None:
    assert [(p.code, p.seats, p.storage_bytes, p.monthly_price) for p in PLANS] == PUBLISHED
    assert all(not p.custom and p.account_id is None for p in PLANS)


@pytest.mark.parametrize(("code", "seats", "storage", "price"), PUBLISHED)
def test_get_plan_finds_each_published_plan(code: str, seats: int, storage: int, price: int) -> None:
    plan = get_plan(code)
    assert plan is not None
    assert (plan.seats, plan.storage_bytes, plan.monthly_price) == (seats, storage, price)
    assert plan.is_free is (price == 0)


def test_unknown_code_is_not_a_plan() -> None:
    assert get_plan("users-13") is None
    assert get_plan("custom-7-1500") is None
    assert get_plan("") is None


def test_only_users_5_is_free() -> None:
    assert FREE_PLAN.code == "users-5"
    assert FREE_PLAN.is_free
    assert [p.code for p in PLANS if p.is_free] == ["users-5"]


def test_periods_discounts_and_trial_are_the_published_ones() -> None:
    assert PERIODS == {6: 0, 9: 5, 12: 7, 24: 10}
    assert tuple(ALLOWED_MONTHS) == (6, 9, 12, 24)
    assert TRIAL_MONTHS == 1
    assert MAX_SELF_SERVICE_SEATS == 1000


@pytest.mark.parametrize(
    ("n", "word"),
    [
        (0, "пользователей"),
        (1, "пользователь"),
        (2, "пользователя"),
        (4, "пользователя"),
        (5, "пользователей"),
        (11, "пользователей"),
        (12, "пользователей"),
        (14, "пользователей"),
        (21, "пользователь"),
        (22, "пользователя"),
        (25, "пользователей"),
        (101, "пользователь"),
        (111, "пользователей"),
        (112, "пользователей"),
        (1000, "пользователей"),
        (1001, "пользователь"),
        (1024, "пользователя"),
    ],
)
def test_plural_forms(n: int, word: str) -> None:
    assert plural_ru(n, "пользователь", "пользователя", "пользователей") == word


@pytest.mark.parametrize(
    ("code", "title"),
    [
        ("users-5", "5 пользователей"),
        ("users-12", "12 пользователей"),
        ("users-24", "24 пользователя"),
        ("users-50", "50 пользователей"),
        ("users-200", "200 пользователей"),
        ("users-500", "500 пользователей"),
        ("users-1000", "1000 пользователей"),
    ],
)
def test_plan_titles(code: str, title: str) -> None:
    plan = get_plan(code)
    assert plan is not None
    assert plan.title == title


def test_custom_plan_belongs_to_its_account() -> None:
    plan = make_custom_plan(account_id=7, seats=1500, storage_bytes=3 * 1024**4, monthly_price=39_990_00)
    assert plan.code == "custom-7-1500"
    assert plan.custom
    assert plan.account_id == 7
    assert (plan.seats, plan.storage_bytes, plan.monthly_price) == (1500, 3 * 1024**4, 39_990_00)
    assert not plan.is_free
    assert plan.title == "Индивидуальный: 1500 пользователей"
    assert make_custom_plan(7, 1001, 1, 1).title == "Индивидуальный: 1001 пользователь"
    assert make_custom_plan(7, 1002, 1, 1).title == "Индивидуальный: 1002 пользователя"


@pytest.mark.parametrize(
    ("seats", "storage", "price", "message"),
    [
        (1000, 1024**4, 30_000_00, "более чем 1000 пользователей"),
        (5, 1024**4, 30_000_00, "более чем 1000 пользователей"),
        (1500, 0, 30_000_00, "хранилища"),
        (1500, -1, 30_000_00, "хранилища"),
        (1500, 1024**4, 0, "копеек"),
        (1500, 1024**4, -100, "копеек"),
        (1500, 1024**4, 30_000.5, "копеек"),
        (1500.0, 1024**4, 30_000_00, "более чем 1000 пользователей"),
    ],
)
def test_custom_plan_rejects_bad_terms_in_russian(seats: int, storage: int, price: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_custom_plan(7, seats, storage, price)


def test_custom_plan_needs_an_account() -> None:
    with pytest.raises(ValueError, match="аккаунт"):
        make_custom_plan(0, 1500, 1024**4, 30_000_00)
