"""Limits: used / limit, why an account is over, the suggested plan with its 6-month price, storage warnings."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from devtools.demo import seed_demo_data
from portal.accounts.models import Account
from portal.billing.catalog import FREE_PLAN, GB, TB, get_plan
from portal.seats.limits import get_limits, suggest_plan
from portal.seats.storage import InvalidStorageValue, parse_used_bytes, set_storage_used
from tests.seats.conftest import NOW


@pytest.mark.parametrize(
    "users, code, price_6_months",
    [
        (6, "users-12", 594_000),
        (12, "users-12", 594_000),
        (13, "users-24", 1_194_000),
        (999, "users-1000", 17_994_000),
        (1000, "users-1000", 17_994_000),
        (1001, None, None),  # no self-service plan: contact support
    ],
)
def test_suggestion_by_number_of_users(users, code, price_6_months):
    suggestion = suggest_plan(users, 0)
    if code is None:
        assert suggestion.plan is None and suggestion.contact_support
        assert suggestion.as_json() == {"code": None, "contact_support": True}
    else:
        assert suggestion.plan.code == code and not suggestion.contact_support
        assert suggestion.as_json() == {"code": code, "price_6_months": price_6_months}


def test_an_account_custom_plan_is_suggested_above_1000():
    from portal.billing.catalog import make_custom_plan

    custom = make_custom_plan(1, 1500, 3 * TB, 45_000_00)
    suggestion = suggest_plan(1200, 0, (custom,))
    assert suggestion.plan == custom and suggestion.price_6_months == 27_000_000
    assert suggest_plan(1600, 0, (custom,)).contact_support


@pytest.mark.parametrize(
    "users, storage, code",
    [
        (3, 2 * GB + 1, "users-12"),  # one byte beyond the free 2 GB
        (3, 30 * GB, "users-50"),  # 24 GB is not enough, 100 GB is
        (30, 20 * GB, "users-50"),  # seats decide
        (100, 400 * GB, "users-500"),  # storage decides: 300 GB is not enough
        (10, 3 * TB, None),  # beyond every offered quota
    ],
)
def test_suggestion_for_storage_beyond_the_quota(users, storage, code):
    suggestion = suggest_plan(users, storage)
    assert (suggestion.plan.code if suggestion.plan else None) == code
    assert suggestion.contact_support is (code is None)


def _set_active_users(db, account: Account, n: int, bulk_members) -> None:
    bulk_members(db, account, n - 1)  # the owner is the first one


@pytest.mark.parametrize(
    "users, over, suggested",
    [
        (5, False, None),
        (6, True, {"code": "users-12", "price_6_months": 594_000}),
        (12, True, {"code": "users-12", "price_6_months": 594_000}),
        (13, True, {"code": "users-24", "price_6_months": 1_194_000}),
        (999, True, {"code": "users-1000", "price_6_months": 17_994_000}),
        (1000, True, {"code": "users-1000", "price_6_months": 17_994_000}),
        (1001, True, {"code": None, "contact_support": True}),
    ],
)
def test_limits_of_an_account_on_the_free_plan(db, make_account, bulk_members, users, over, suggested):
    account = make_account()
    _set_active_users(db, account, users, bulk_members)
    limits = get_limits(db, account.id, NOW)
    assert limits.as_json() == {
        "account_id": account.id,
        "plan": "users-5",
        "seats": {"used": users, "limit": 5},
        "storage": {"used_bytes": 0, "limit_bytes": 2 * GB},
        "over_limit": over,
        "reasons": ["seats"] if over else [],
        "suggested_plan": suggested,
    }


def test_demo_companies(app, db):
    with app.app_context():
        demo = seed_demo_data(db)
    big = get_limits(db, demo["big"].id, NOW)
    assert (big.seats_used, big.seats_limit, big.reasons) == (9, 5, ("seats",))
    assert big.suggestion.plan == get_plan("users-12") and big.suggestion.price_6_months == 594_000
    small = get_limits(db, demo["small"].id, NOW)
    assert small.seats_used <= small.seats_limit  # the free plan, or the paid one billing's demo gives it
    assert (small.over_limit, small.suggestion, small.as_json()["suggested_plan"]) == (False, None, None)


def test_storage_over_quota_and_the_90_percent_warning(db, make_account):
    account = make_account()
    quota = FREE_PLAN.storage_bytes

    def limits_with(used: int):
        set_storage_used(db, account_id=account.id, used_bytes=used)
        db.commit()
        return get_limits(db, account.id, NOW)

    ninety = -(-quota * 9 // 10)  # the first whole byte at 90 %
    below = limits_with(ninety - 1)
    assert not below.storage_warning and not below.over_limit
    at_90 = limits_with(ninety)
    assert at_90.storage_warning and not at_90.over_limit and at_90.storage_percent == 90
    full = limits_with(quota)
    assert full.storage_warning and not full.storage_over  # exactly the quota still fits
    over = limits_with(quota + 1)
    assert over.storage_over and not over.storage_warning and over.reasons == ("storage",)
    assert over.suggestion.plan.code == "users-12"
    assert over.as_json()["storage"] == {"used_bytes": quota + 1, "limit_bytes": quota}


def test_both_reasons_and_the_suggestion_fits_both(db, make_account, bulk_members):
    account = make_account()
    bulk_members(db, account, 12)  # 13 users
    set_storage_used(db, account_id=account.id, used_bytes=50 * GB)
    db.commit()
    limits = get_limits(db, account.id, NOW)
    assert limits.reasons == ("seats", "storage")
    assert limits.suggestion.plan.code == "users-50"  # users-24 has the seats but only 24 GB


def test_adding_beyond_the_limit_is_foreseen(db, make_account, bulk_members):
    account = make_account()
    bulk_members(db, account, 3)
    limits = get_limits(db, account.id, NOW)
    assert limits.seats_used == 4 and not limits.exceeded_by_adding(1)
    assert limits.exceeded_by_adding(2) and limits.seats_after_adding(2) == 6


@pytest.mark.parametrize("value", [-1, 1.0, 5.5, "10", None, True, False, [1], {"n": 1}, 2**63])
def test_storage_value_must_be_a_non_negative_integer(value):
    with pytest.raises(InvalidStorageValue):
        parse_used_bytes(value)


def test_storage_value_accepts_zero_and_big_integers(db, make_account):
    account = make_account()
    assert parse_used_bytes(0) == 0
    previous = set_storage_used(db, account_id=account.id, used_bytes=5 * TB)
    db.commit()
    assert previous == 0
    assert db.scalar(sa.select(Account.storage_used_bytes).where(Account.id == account.id)) == 5 * TB


def test_storage_reads_the_same_on_the_team_page_and_the_dashboard(client, auth, make_account):
    """The team page said «0 Б» where the dashboard said «0 ГБ»: one format for storage everywhere."""
    make_account(owner_phone="+79163000001")
    auth.login("+79163000001")
    team = client.get("/team").get_data(as_text=True).replace("&nbsp;", "\xa0")
    home = client.get("/").get_data(as_text=True).replace("&nbsp;", "\xa0")
    assert "0\xa0ГБ из 2\xa0ГБ" in team and "0\xa0ГБ" in home
    assert "0\xa0Б" not in team


def test_limits_cost_a_constant_number_of_queries(app, db, make_account, bulk_members):
    engine = app.extensions["portal.db"].engine
    counted: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        counted.append(statement)

    small = make_account(members=9)
    big = make_account()
    bulk_members(db, big, 999)
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        # Usage (seats and storage in one query) and the effective plan (one query).
        per_account = []
        for account_id in (small.id, big.id):
            counted.clear()
            db.expire_all()
            get_limits(db, account_id, NOW)
            per_account.append(len(counted))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert per_account[0] == per_account[1] <= 2
