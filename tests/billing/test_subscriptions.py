"""The subscription lifecycle on frozen Moscow dates: free, buy, renew, upgrade, downgrade, trial, expiry."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from blinker import Signal
from sqlalchemy import event

from portal.billing import signals
from portal.billing.custom_plans import (
    create_custom_plan,
    deactivate_custom_plan,
    get_plan_for_account,
    list_plans_for_account,
)
from portal.billing.models import Order, SubscriptionPeriod
from portal.billing.orders import cancel_order, create_order
from portal.billing.purchases import price_purchase
from portal.billing.settlement import apply_paid_order, order_problem
from portal.billing.subscriptions import PurchaseError, TrialError, get_effective_plan, get_subscription_state
from portal.billing.tick import tick
from portal.billing.trial import start_trial
from tests.billing.conftest import audit_actions
from tests.billing.terms import msk, period_total, upgrade_total, utc


def state_of(db, account, now):
    return get_subscription_state(db, account.id, now)


# --- free and the first purchase --------------------------------------------------------------------------


def test_a_new_account_is_on_the_free_plan(db, make_account):
    account = make_account()
    st = state_of(db, account, msk(2026, 3, 10))
    assert (st.status, st.plan.code, st.plan.seats) == ("free", "users-5", 5)
    assert st.paid_until is None and st.trial_until is None and st.scheduled == []
    assert get_effective_plan(db, account.id, msk(2026, 3, 10)).code == "users-5"


def test_buying_from_free_starts_today_and_is_paid_for_the_months(db, make_account, buy):
    account = make_account()
    order = buy(account, "users-12", 6, msk(2026, 3, 10))
    assert order.amount == period_total("users-12", 6) == 594_000
    st = state_of(db, account, msk(2026, 3, 10))
    assert st.status == "paid" and st.plan.code == "users-12"
    assert st.period_start == date(2026, 3, 10)
    assert st.period_end == date(2026, 9, 10)  # exclusive
    assert st.paid_until == date(2026, 9, 9)  # «оплачен по 09.09.2026»
    assert (order.starts_on, order.ends_on) == (date(2026, 3, 10), date(2026, 9, 10))
    assert audit_actions(db, account.id) == ["billing.order_created", "billing.order_paid"]


@pytest.mark.parametrize(
    ("months", "discount_percent", "expected_kopecks"),
    [(6, 0, 990 * 6 * 100), (9, 5, 846_450), (12, 7, 1_104_840), (24, 10, 2_138_400)],
)
def test_order_carries_the_published_price_for_each_period(
    db, make_account, order_for, months, discount_percent, expected_kopecks
):
    account = make_account()
    order = order_for(account, "users-12", months, msk(2026, 3, 10))
    subtotal = 99_000 * months
    assert order.subtotal == subtotal
    assert order.discount_percent == discount_percent
    assert order.amount == expected_kopecks == period_total("users-12", months)
    assert order.discount == subtotal - expected_kopecks
    assert order.proration == 0 and order.kind == "new" and order.status == "pending"


def test_moscow_midnight_decides_the_first_day(db, make_account, buy):
    # 2026-12-31T21:30Z is already 00:30 on 1 January 2027 in Moscow.
    late = make_account()
    buy(late, "users-24", 12, utc(2026, 12, 31, 21, 30))
    st = state_of(db, late, utc(2026, 12, 31, 21, 30))
    assert st.period_start == date(2027, 1, 1) and st.paid_until == date(2027, 12, 31)
    # Half an hour earlier it is still 31 December in Moscow.
    early = make_account()
    buy(early, "users-24", 12, utc(2026, 12, 31, 20, 30))
    st = state_of(db, early, utc(2026, 12, 31, 20, 30))
    assert st.period_start == date(2026, 12, 31) and st.paid_until == date(2027, 12, 30)


@pytest.mark.parametrize(
    ("bought_on", "months", "ends_on"),
    [
        (date(2026, 8, 31), 6, date(2027, 2, 28)),  # 31 Aug + 6 months: February has no 31st
        (date(2027, 8, 31), 6, date(2028, 2, 29)),  # …and in a leap year it has a 29th
        (date(2028, 2, 29), 12, date(2029, 2, 28)),  # a leap day bought for a year
        (date(2026, 3, 31), 9, date(2026, 12, 31)),
        (date(2026, 5, 31), 24, date(2028, 5, 31)),
    ],
)
def test_period_ends_at_month_ends_and_leap_years(db, make_account, buy, bought_on, months, ends_on):
    account = make_account()
    now = msk(bought_on.year, bought_on.month, bought_on.day)
    buy(account, "users-12", months, now)
    st = state_of(db, account, now)
    assert st.period_end == ends_on
    assert st.paid_until == ends_on - timedelta(days=1)


# --- renewal ----------------------------------------------------------------------------------------------


def test_renewal_extends_from_the_current_end_not_from_today(db, make_account, buy):
    account = make_account()
    buy(account, "users-12", 6, msk(2026, 1, 15))  # 15.01.2026 – 14.07.2026
    renewal = buy(account, "users-12", 12, msk(2026, 6, 20))
    assert renewal.kind == "renewal"
    assert renewal.amount == period_total("users-12", 12)
    assert (renewal.starts_on, renewal.ends_on) == (date(2026, 7, 15), date(2027, 7, 15))
    st = state_of(db, account, msk(2026, 6, 20))
    assert st.plan.code == "users-12"
    assert st.period_end == date(2026, 7, 15)
    assert st.paid_until == date(2027, 7, 14)
    assert [(p.plan.code, p.starts_on) for p in st.scheduled] == [("users-12", date(2026, 7, 15))]


def test_renewal_of_a_month_end_period_chains_from_the_exclusive_end(db, make_account, buy):
    account = make_account()
    buy(account, "users-12", 6, msk(2026, 8, 31))  # ends (exclusive) 28.02.2027
    renewal = buy(account, "users-12", 6, msk(2027, 2, 1))
    assert (renewal.starts_on, renewal.ends_on) == (date(2027, 2, 28), date(2027, 8, 28))
    st = state_of(db, account, msk(2027, 2, 1))
    assert st.paid_until == date(2027, 8, 27)


def test_renewal_after_expiry_starts_today(db, make_account, buy):
    account = make_account()
    buy(account, "users-12", 6, msk(2026, 1, 15))  # paid until 14.07.2026
    later = buy(account, "users-12", 6, msk(2026, 9, 1))
    assert later.kind == "new"
    assert (later.starts_on, later.ends_on) == (date(2026, 9, 1), date(2027, 3, 1))


# --- upgrade ----------------------------------------------------------------------------------------------


def test_upgrade_is_co_termed_and_prorated_by_whole_moscow_days(db, make_account, buy, order_for):
    account = make_account()
    buy(account, "users-12", 12, msk(2026, 1, 10))  # 10.01.2026 – 09.01.2027, 365 days
    now = msk(2026, 4, 20)
    days_total = (date(2027, 1, 10) - date(2026, 1, 10)).days
    days_left = (date(2027, 1, 10) - date(2026, 4, 20)).days
    assert (days_total, days_left) == (365, 265)
    expected = upgrade_total("users-12", "users-50", 12, days_left, days_total)

    purchase = price_purchase(db, account.id, get_plan_for_account(db, account.id, "users-50"), 6, now)
    assert purchase.kind == "upgrade"
    assert purchase.months == 12  # the months of the original purchase, whatever was asked
    assert purchase.amount == purchase.proration == expected
    assert (purchase.days_left, purchase.days_total) == (265, 365)

    order = order_for(account, "users-50", 6, now)
    assert order.kind == "upgrade" and order.amount == expected and order.months == 12
    assert (order.starts_on, order.ends_on) == (date(2026, 4, 20), date(2027, 1, 10))
    assert apply_paid_order(db, order.id, now=now, reference="up-1")
    db.commit()
    st = state_of(db, account, now)
    assert st.plan.code == "users-50"
    assert st.period_end == date(2027, 1, 10) and st.paid_until == date(2027, 1, 9)
    # The day before, the old plan was in force (history is not rewritten).
    assert get_effective_plan(db, account.id, msk(2026, 4, 19)).code == "users-12"


def test_a_second_upgrade_is_priced_against_the_original_purchase(db, make_account, buy):
    account = make_account()
    buy(account, "users-12", 6, msk(2026, 2, 1))  # 01.02.2026 – 31.07.2026: 181 days
    buy(account, "users-24", 6, msk(2026, 3, 1))
    second = buy(account, "users-200", 6, msk(2026, 5, 1))
    days_total = (date(2026, 8, 1) - date(2026, 2, 1)).days
    days_left = (date(2026, 8, 1) - date(2026, 5, 1)).days
    assert second.kind == "upgrade"
    assert second.amount == upgrade_total("users-24", "users-200", 6, days_left, days_total)
    st = state_of(db, account, msk(2026, 5, 1))
    assert st.plan.code == "users-200" and st.period_end == date(2026, 8, 1)


def test_upgrade_on_the_last_day_costs_one_days_share(db, make_account, buy):
    account = make_account()
    buy(account, "users-12", 6, msk(2026, 1, 1))  # ends (exclusive) 01.07.2026, 181 days
    last = buy(account, "users-24", 6, msk(2026, 6, 30, 23, 59))
    assert last.amount == upgrade_total("users-12", "users-24", 6, 1, 181)


def test_upgrade_paid_after_its_period_ended_is_never_applied(db, make_account, buy, order_for):
    """Billing says why such an order can take no money (the ledger then keeps it on the balance, see the ledger's
    tests) and refuses to activate it: nothing is marked paid that granted nothing."""
    account = make_account()
    buy(account, "users-12", 6, msk(2026, 1, 1))
    order = order_for(account, "users-24", 6, msk(2026, 6, 20))
    assert order.kind == "upgrade"
    assert "уже закончился" in order_problem(db, order, msk(2026, 7, 3))
    with pytest.raises(PurchaseError, match="нельзя применить"):
        apply_paid_order(db, order.id, now=msk(2026, 7, 3), reference="late")
    db.rollback()
    db.refresh(order)
    assert order.status == "pending"
    assert state_of(db, account, msk(2026, 7, 3)).plan.code == "users-5"
    assert "billing.order_paid" not in audit_actions(db, account.id)[-1:]


# --- downgrade and scheduled changes ----------------------------------------------------------------------


def test_a_smaller_plan_starts_when_the_paid_period_ends(db, make_account, buy):
    account = make_account()
    buy(account, "users-50", 6, msk(2026, 1, 10))  # until 09.07.2026
    down = buy(account, "users-12", 12, msk(2026, 5, 5))
    assert down.kind == "downgrade"
    assert down.amount == period_total("users-12", 12)
    assert (down.starts_on, down.ends_on) == (date(2026, 7, 10), date(2027, 7, 10))
    assert get_effective_plan(db, account.id, msk(2026, 7, 9, 23, 59)).code == "users-50"
    assert get_effective_plan(db, account.id, msk(2026, 7, 10, 0, 0)).code == "users-12"
    st = state_of(db, account, msk(2026, 5, 5))
    assert [(p.plan.code, p.starts_on, p.last_day) for p in st.scheduled] == [
        ("users-12", date(2026, 7, 10), date(2027, 7, 9))
    ]


def test_tick_applies_a_scheduled_change_once_and_says_so(db, make_account, buy):
    account = make_account(name="ООО «Сдвиг»")
    buy(account, "users-50", 6, msk(2026, 1, 10))
    buy(account, "users-12", 6, msk(2026, 5, 5))
    assert tick(db, msk(2026, 7, 9, 23, 0)) == []
    done = tick(db, msk(2026, 7, 10, 0, 5))
    assert done == [f"ООО «Сдвиг» (№ {account.id}): с 10.07.2026 тариф сменился на «12 пользователей» по 09.01.2027"]
    assert tick(db, msk(2026, 7, 10, 0, 6)) == []
    actions = audit_actions(db, account.id)
    assert actions.count("billing.scheduled_change_applied") == 1
    assert "billing.expired" not in actions  # the end of users-50 is not a fall to free


def test_tick_records_a_renewal_start_and_later_the_expiry(db, make_account, buy):
    account = make_account()
    buy(account, "users-12", 6, msk(2026, 1, 15))
    buy(account, "users-12", 6, msk(2026, 7, 1))  # 15.07.2026 – 14.01.2027
    tick(db, msk(2026, 7, 15, 9))
    tick(db, msk(2027, 1, 15, 9))
    tick(db, msk(2027, 1, 16, 9))
    actions = audit_actions(db, account.id)
    assert actions.count("billing.renewal_started") == 1
    assert actions.count("billing.expired") == 1
    assert state_of(db, account, msk(2027, 1, 15, 9)).plan.code == "users-5"


# --- expiry -----------------------------------------------------------------------------------------------


def test_expiry_falls_back_to_free_at_moscow_midnight(db, make_account, buy):
    account = make_account(name="ООО «Срок»")
    buy(account, "users-24", 6, msk(2026, 6, 30))  # ends (exclusive) 30.12.2026
    # 29.12.2026 23:59 Moscow is 20:59 UTC: still paid. 21:00 UTC is midnight in Moscow: free.
    assert get_effective_plan(db, account.id, utc(2026, 12, 29, 20, 59)).code == "users-24"
    assert get_effective_plan(db, account.id, utc(2026, 12, 29, 21, 0)).code == "users-5"
    assert tick(db, utc(2026, 12, 29, 20, 59)) == []
    done = tick(db, utc(2026, 12, 29, 21, 0))
    assert done == [
        f"ООО «Срок» (№ {account.id}): оплаченный период «24 пользователя» закончился 29.12.2026, "
        "действует бесплатный тариф"
    ]
    assert tick(db, utc(2026, 12, 30, 12, 0)) == []
    assert audit_actions(db, account.id).count("billing.expired") == 1


# --- trial ------------------------------------------------------------------------------------------------


def test_trial_is_one_month_of_any_plan_once_per_account(db, make_account):
    account = make_account()
    trial = start_trial(db, actor=None, account_id=account.id, plan_code="users-200", now=msk(2026, 1, 31))
    db.commit()
    assert (trial.starts_on, trial.ends_on) == (date(2026, 1, 31), date(2026, 2, 28))
    st = state_of(db, account, msk(2026, 2, 10))
    assert st.status == "trial" and st.plan.code == "users-200" and st.trial_until == date(2026, 2, 27)
    assert st.trial_used and st.paid_until is None
    with pytest.raises(TrialError, match="один раз"):
        start_trial(db, actor=None, account_id=account.id, plan_code="users-12", now=msk(2026, 2, 10))
    db.rollback()
    # Still refused after the trial is over.
    with pytest.raises(TrialError):
        start_trial(db, actor=None, account_id=account.id, plan_code="users-12", now=msk(2026, 9, 1))
    db.rollback()
    assert audit_actions(db, account.id) == ["billing.trial_started"]


def test_trial_in_a_leap_year_ends_on_29_february(db, make_account):
    account = make_account()
    trial = start_trial(db, actor=None, account_id=account.id, plan_code="users-24", now=msk(2028, 1, 31))
    db.commit()
    assert trial.ends_on == date(2028, 2, 29)
    assert get_effective_plan(db, account.id, msk(2028, 2, 28, 23, 59)).code == "users-24"
    assert get_effective_plan(db, account.id, msk(2028, 2, 29, 0, 1)).code == "users-5"


def test_trial_end_falls_back_to_free_and_is_recorded_once(db, make_account):
    account = make_account()
    start_trial(db, actor=None, account_id=account.id, plan_code="users-50", now=msk(2026, 3, 1))
    db.commit()
    assert tick(db, msk(2026, 3, 31, 23)) == []
    assert len(tick(db, msk(2026, 4, 1, 0, 1))) == 1
    assert tick(db, msk(2026, 4, 2)) == []
    assert audit_actions(db, account.id).count("billing.trial_expired") == 1
    assert state_of(db, account, msk(2026, 4, 1, 1)).status == "free"


def test_buying_during_a_trial_ends_it_and_starts_today(db, make_account, buy):
    account = make_account()
    start_trial(db, actor=None, account_id=account.id, plan_code="users-200", now=msk(2026, 3, 1))
    db.commit()
    order = buy(account, "users-12", 6, msk(2026, 3, 10))
    assert order.kind == "new"
    assert (order.starts_on, order.ends_on) == (date(2026, 3, 10), date(2026, 9, 10))
    st = state_of(db, account, msk(2026, 3, 10))
    assert st.status == "paid" and st.plan.code == "users-12" and st.trial_until is None
    # The trial's remaining days are gone: no fall back to the trial plan, no "expired" later.
    tick(db, msk(2026, 4, 2))
    assert "billing.trial_expired" not in audit_actions(db, account.id)


def test_no_trial_during_a_paid_period_and_none_of_the_free_plan(db, make_account, buy):
    account = make_account()
    with pytest.raises(TrialError):
        start_trial(db, actor=None, account_id=account.id, plan_code="users-5", now=msk(2026, 3, 1))
    db.rollback()
    buy(account, "users-12", 6, msk(2026, 3, 1))
    with pytest.raises(TrialError, match="оплаченного"):
        start_trial(db, actor=None, account_id=account.id, plan_code="users-50", now=msk(2026, 3, 5))
    db.rollback()


# --- orders -----------------------------------------------------------------------------------------------


def test_the_same_idempotency_key_gives_the_same_order(db, make_account, order_for):
    account = make_account()
    first = order_for(account, "users-24", 9, msk(2026, 3, 10), key="same-key-123")
    again = order_for(account, "users-24", 9, msk(2026, 3, 10, 12, 1), key="same-key-123")
    assert again.id == first.id
    assert db.scalar(sa.select(sa.func.count()).select_from(Order)) == 1
    assert audit_actions(db, account.id) == ["billing.order_created"]
    with pytest.raises(PurchaseError, match="другие условия"):
        order_for(account, "users-50", 9, msk(2026, 3, 10), key="same-key-123")
    db.rollback()
    other = order_for(account, "users-24", 9, msk(2026, 3, 10), key="other-key-456")
    assert other.id != first.id


def test_a_key_of_another_account_is_refused(db, make_account, order_for):
    a, b = make_account(), make_account()
    order_for(a, "users-12", 6, msk(2026, 3, 10), key="shared-key-1")
    with pytest.raises(PurchaseError):
        order_for(b, "users-12", 6, msk(2026, 3, 10), key="shared-key-1")
    db.rollback()


def test_paying_twice_applies_once(db, make_account, order_for):
    account = make_account()
    order = order_for(account, "users-12", 6, msk(2026, 3, 10))
    assert apply_paid_order(db, order.id, now=msk(2026, 3, 10, 12, 5), reference="pay-1") is True
    db.commit()
    assert apply_paid_order(db, order.id, now=msk(2026, 3, 10, 12, 6), reference="pay-1") is False
    db.commit()
    periods = db.scalars(sa.select(SubscriptionPeriod).where(SubscriptionPeriod.account_id == account.id)).all()
    assert len(periods) == 1
    assert audit_actions(db, account.id).count("billing.order_paid") == 1
    db.refresh(order)
    assert order.payment_reference == "pay-1" and order.paid_at == msk(2026, 3, 10, 12, 5)


def test_an_unpaid_card_order_expires_after_a_day_once(db, make_account, order_for):
    account = make_account()
    order = order_for(account, "users-12", 6, msk(2026, 3, 10, 12))
    assert tick(db, msk(2026, 3, 11, 11, 59)) == []
    done = tick(db, msk(2026, 3, 11, 12, 0))
    assert done == [f"ООО «Тест» (№ {account.id}): заказ № {order.id} не оплачен в срок и закрыт"]
    assert tick(db, msk(2026, 3, 12)) == []
    db.refresh(order)
    assert order.status == "expired"
    assert audit_actions(db, account.id).count("billing.order_expired") == 1


def test_an_expired_order_takes_no_money(db, make_account, order_for):
    """An expired order's invoice is annulled; money arriving late goes to the balance (the ledger's tests), from
    where the owner applies it to a new order in one click — the order itself is never revived behind their back."""
    account = make_account()
    order = order_for(account, "users-12", 6, msk(2026, 3, 10))
    tick(db, msk(2026, 3, 12))
    assert order_problem(db, order, msk(2026, 3, 14)) == f"заказ № {order.id} истёк"
    with pytest.raises(PurchaseError, match="истёк"):
        apply_paid_order(db, order.id, now=msk(2026, 3, 14), reference="late-money")
    db.rollback()
    assert state_of(db, account, msk(2026, 3, 14)).plan.code == "users-5"


def test_a_new_order_paid_after_another_purchase_is_appended_not_lost(db, make_account, order_for, buy):
    account = make_account()
    waiting = order_for(account, "users-24", 6, msk(2026, 3, 10), payer_type="invoice")
    buy(account, "users-24", 6, msk(2026, 3, 11))  # paid by card meanwhile: 11.03 – 10.09.2026
    assert apply_paid_order(db, waiting.id, now=msk(2026, 3, 15), reference="bank-1")
    db.commit()
    st = state_of(db, account, msk(2026, 3, 15))
    assert st.paid_until == date(2027, 3, 10)  # the invoice's six months follow the card's


def test_cancel_order(db, make_account, order_for, buy):
    account = make_account()
    order = order_for(account, "users-12", 6, msk(2026, 3, 10))
    assert cancel_order(db, order.id, actor=None, reason="передумали", now=msk(2026, 3, 10)) is True
    assert cancel_order(db, order.id, actor=None, reason="ещё раз", now=msk(2026, 3, 10)) is False
    db.commit()
    paid = buy(account, "users-12", 6, msk(2026, 3, 11))
    with pytest.raises(PurchaseError, match="уже оплачен"):
        cancel_order(db, paid.id, actor=None, reason="x", now=msk(2026, 3, 11))
    db.rollback()
    assert audit_actions(db, account.id).count("billing.order_canceled") == 1


@pytest.mark.parametrize(
    ("plan", "months", "message"),
    [("users-5", 6, "Бесплатный"), ("users-12", 3, "не предлагается"), ("users-12", 7, "не предлагается")],
)
def test_what_cannot_be_bought(db, make_account, plan, months, message):
    account = make_account()
    with pytest.raises(PurchaseError, match=message):
        create_order(
            db,
            actor=None,
            account_id=account.id,
            plan_code=plan,
            months=months,
            payer_type="card",
            license_version="2026-01",
            idempotency_key="cannot-buy-1",
            now=msk(2026, 3, 10),
        )
    assert db.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_custom_plans_belong_to_their_account(db, make_account, buy):
    mine, other = make_account(), make_account()
    custom = create_custom_plan(
        db,
        actor=None,
        account_id=mine.id,
        seats=1500,
        storage_bytes=3 * 1024**4,
        monthly_price=39_990_00,
        now=msk(2026, 3, 1),
    )
    db.commit()
    assert custom.code == f"custom-{mine.id}-1500"
    assert [p.code for p in list_plans_for_account(db, mine.id)][-1] == custom.code
    assert custom.code not in [p.code for p in list_plans_for_account(db, other.id)]
    assert get_plan_for_account(db, other.id, custom.code) is None
    with pytest.raises(PurchaseError):
        price_purchase(db, other.id, custom.as_plan(), 12, msk(2026, 3, 1))
    order = buy(mine, custom.code, 12, msk(2026, 3, 1))
    assert order.amount == 39_990_00 * 12 * 93 // 100
    plan = get_effective_plan(db, mine.id, msk(2026, 3, 2))
    assert (plan.code, plan.seats, plan.custom) == (custom.code, 1500, True)
    # Withdrawing the offer does not take away what was paid.
    deactivate_custom_plan(db, actor=None, account_id=mine.id, code=custom.code, now=msk(2026, 3, 3))
    db.commit()
    assert get_effective_plan(db, mine.id, msk(2026, 3, 4)).seats == 1500
    assert custom.code not in [p.code for p in list_plans_for_account(db, mine.id)]


def test_effective_plan_is_one_query(app, db, make_account, buy):
    account = make_account()
    buy(account, "users-24", 6, msk(2026, 3, 1))
    statements: list[str] = []
    engine = app.extensions["portal.db"].engine

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    account_id = account.id
    db.expire_all()
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert get_effective_plan(db, account_id, msk(2026, 4, 1)).code == "users-24"
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1, statements


# --- tick hooks and the command ---------------------------------------------------------------------------


def test_tick_runs_hooks_and_reports_a_failing_one(db, monkeypatch):
    monkeypatch.setattr(signals, "tick_done", Signal())
    seen = []

    def good(session, now):
        seen.append(now)
        return ["платёж № 1 перепроверен"]

    def bad(session, now):
        raise RuntimeError("провайдер недоступен")

    signals.tick_done.connect(bad)
    signals.tick_done.connect(good)
    signals.tick_done.connect(good)  # registering twice runs it once
    done = tick(db, msk(2026, 3, 1))
    assert seen == [msk(2026, 3, 1)]
    assert done[-1] == "платёж № 1 перепроверен"
    assert any("провайдер недоступен" in line for line in done)


def test_billing_tick_command_prints_what_it_did(app, db, make_account, buy):
    account = make_account(name="ООО «Команда»")
    buy(account, "users-12", 6, msk(2026, 1, 15))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["billing", "tick", "--now", "2026-07-15T00:10:00+03:00"])
    assert result.exit_code == 0, result.output
    assert "«12 пользователей» закончился 14.07.2026, действует бесплатный тариф" in result.output
    again = runner.invoke(args=["billing", "tick", "--now", "2026-07-15T00:11:00+03:00"])
    assert again.exit_code == 0 and "Нечего делать." in again.output
    bad = runner.invoke(args=["billing", "tick", "--now", "2026-07-15T00:11:00"])
    assert bad.exit_code != 0 and "часовой пояс" in bad.output


def test_a_paid_upgrade_withdraws_other_unpaid_upgrades(db, make_account, buy, order_for):
    account = make_account()
    buy(account, "users-12", 12, msk(2026, 1, 10))
    first_try = order_for(account, "users-50", 12, msk(2026, 3, 1))
    invoice = order_for(account, "users-12", 6, msk(2026, 3, 1), payer_type="invoice")  # a renewal: still valid
    buy(account, "users-24", 12, msk(2026, 3, 2))
    db.refresh(first_try)
    db.refresh(invoice)
    assert (first_try.status, invoice.status) == ("canceled", "pending")
    assert audit_actions(db, account.id).count("billing.order_canceled") == 1
