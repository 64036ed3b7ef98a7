"""An upgrade during a paid period with a prepaid next period on the smaller plan: checkout offers to raise that
period too in the same payment (ticked), prices it by the published terms to the kopeck, and paying the one order
puts both periods on the bigger plan. The order stays payable only while the period it raises has not begun."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from portal.billing.catalog import get_plan
from portal.billing.models import Order, OrderTopup, SubscriptionPeriod
from portal.billing.orders import cancel_scheduled_period, create_order, list_order_topups
from portal.billing.settlement import _problem, apply_paid_order, order_problem
from portal.billing.subscriptions import PurchaseError, get_effective_plan, get_subscription_state
from portal.billing.tick import tick
from tests.billing import test_checkout as checkout_tests
from tests.billing.conftest import page_text
from tests.billing.terms import msk, period_total, upgrade_total
from tests.billing.test_checkout import form_fields, rub
from tests.conftest import post

# The checkout tests' fixtures: an owner signed in on 10.03.2026 and checkout handlers that record their calls.
owner = checkout_tests.owner
handlers = checkout_tests.handlers

BOUGHT = msk(2026, 3, 10, 15)
TODAY = msk(2026, 9, 1, 12)
# users-24 for 12 months from 10.03.2026, then a renewal from 10.03.2027: 365 days, 190 of them left on 01.09.2026.
CURRENT = upgrade_total("users-24", "users-50", 12, 190, 365)
NEXT = period_total("users-50", 12) - period_total("users-24", 12)


def prepaid_two_periods(account, buy):
    buy(account, "users-24", 12, BOUGHT)
    renewal = buy(account, "users-24", 12, BOUGHT)
    assert (renewal.kind, renewal.starts_on) == ("renewal", date(2027, 3, 10))
    return renewal


def test_checkout_offers_the_next_period_ticked_and_totals_both_to_the_kopeck(client, owner, db, buy, freeze, handlers):
    prepaid_two_periods(owner, buy)
    freeze(TODAY)
    resp = client.get("/checkout?plan=users-50&months=12")
    assert resp.status_code == 200
    text = page_text(resp)
    assert "Повысить и оплаченный период с 10.03.2027 до 50 пользователей" in text
    assert f"+{rub(NEXT)}" in text and f"Доплата пропорционально дням {rub(CURRENT)}" in text
    assert f"Итого к оплате {rub(CURRENT + NEXT)}" in text
    assert "доплата до 09.03.2027 и за период с 10.03.2027 по 09.03.2028" in text
    # Every period the upgrade touches is listed, the next one on the bigger plan.
    assert "«50 пользователей» с 10.03.2027 по 09.03.2028 — вместо «24 пользователя»" in text
    html = resp.get_data(as_text=True)
    assert 'name="topup"' in html and " checked" in html.split('name="topup"')[1].split(">")[0]
    fields = form_fields(html)
    assert fields["shown_amount"] == str(CURRENT + NEXT)

    resp = post(
        client,
        "/checkout?plan=users-50&months=12",
        {**fields, "payer_type": "card", "accept_license": "y", "topup": _next_period_id(db, owner)},
    )
    assert resp.status_code == 302, page_text(resp)
    order = db.scalars(sa.select(Order).order_by(Order.id.desc())).first()
    assert (order.kind, order.amount, order.proration) == ("upgrade", CURRENT + NEXT, CURRENT)
    [topup] = db.scalars(sa.select(OrderTopup).where(OrderTopup.order_id == order.id)).all()
    assert (topup.starts_on, topup.ends_on, topup.amount, topup.old_plan_code) == (
        date(2027, 3, 10),
        date(2028, 3, 10),
        NEXT,
        "users-24",
    )


def test_unticked_the_next_period_keeps_its_plan_and_the_total_is_the_current_part(
    client, owner, db, buy, freeze, handlers
):
    prepaid_two_periods(owner, buy)
    freeze(TODAY)
    resp = client.get("/checkout?plan=users-50&months=12&topups_choice=1")
    text = page_text(resp)
    assert f"Итого к оплате {rub(CURRENT)}" in text
    assert "«24 пользователя» с 10.03.2027 по 09.03.2028 — только 24 пользователя" in text
    fields = form_fields(resp.get_data(as_text=True))
    assert fields["shown_amount"] == str(CURRENT)
    # The form as the page left it (the box unticked) orders the current part only.
    resp = post(client, "/checkout?plan=users-50&months=12", {**fields, "payer_type": "card", "accept_license": "y"})
    assert resp.status_code == 302
    order = db.scalars(sa.select(Order).order_by(Order.id.desc())).first()
    assert order.amount == CURRENT
    assert db.scalars(sa.select(OrderTopup).where(OrderTopup.order_id == order.id)).all() == []


def test_ticking_without_javascript_asks_to_confirm_the_new_total(client, owner, db, buy, freeze, handlers):
    prepaid_two_periods(owner, buy)
    freeze(TODAY)
    fields = form_fields(client.get("/checkout?plan=users-50&months=12").get_data(as_text=True))
    # Unticked, but the page's figure (with the box ticked) sent: the server shows the new total and orders nothing.
    resp = post(client, "/checkout?plan=users-50&months=12", {**fields, "payer_type": "card", "accept_license": "y"})
    assert resp.status_code == 400
    assert f"к оплате {rub(CURRENT)}" in page_text(resp)
    assert db.scalars(sa.select(Order).where(Order.kind == "upgrade")).all() == []


def _next_period_id(db, account) -> str:
    [period] = get_subscription_state(db, account.id, TODAY).scheduled
    return str(period.id)


def upgrade_with_next(db, account, order_for):
    order = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code="users-50",
        months=12,
        payer_type="invoice",
        license_version="2026-01",
        idempotency_key="upgrade-with-next-1",
        now=TODAY,
    )
    db.commit()
    return order


def test_paying_the_order_puts_both_periods_on_the_bigger_plan(db, make_account, buy, order_for):
    account = make_account()
    renewal = prepaid_two_periods(account, buy)
    order = upgrade_with_next(db, account, order_for)
    assert order.amount == CURRENT + NEXT
    assert order_problem(db, order, TODAY) is None
    assert apply_paid_order(db, order.id, now=TODAY, reference="test-up")
    db.commit()
    state = get_subscription_state(db, account.id, TODAY)
    assert (state.plan.code, state.current.ends_on) == ("users-50", date(2027, 3, 10))
    [later] = state.scheduled
    assert (later.plan.code, later.starts_on, later.ends_on) == ("users-50", date(2027, 3, 10), date(2028, 3, 10))
    # The raised period is still the renewal's: cancelling it gives that order's money back as before.
    assert later.order_id == renewal.id
    assert state.paid_until == date(2028, 3, 9)
    # On the day it begins the tick records the bigger plan, and its limits apply.
    tick(db, msk(2027, 3, 10, 1))
    assert get_effective_plan(db, account.id, msk(2027, 3, 10, 12)).code == "users-50"
    old = db.scalars(
        sa.select(SubscriptionPeriod).where(SubscriptionPeriod.order_id == renewal.id).order_by(SubscriptionPeriod.id)
    ).all()
    assert [(p.plan_code, p.status) for p in old] == [("users-24", "replaced"), ("users-50", "active")]


def test_the_order_cannot_be_applied_once_the_period_it_raises_is_canceled_or_begun(db, make_account, buy, order_for):
    account = make_account()
    prepaid_two_periods(account, buy)
    order = upgrade_with_next(db, account, order_for)
    [later] = get_subscription_state(db, account.id, TODAY).scheduled
    # Begun: by then the current period it tops up has ended too; nothing of the order applies.
    assert "уже закончился или изменился" in order_problem(db, order, msk(2027, 3, 11))
    db.rollback()
    cancel_scheduled_period(db, account_id=account.id, period_id=later.id, actor=None, reason="т", now=TODAY)
    db.commit()
    # Withdrawn with the period it would raise (its invoice annulled by documents): nothing left to pay.
    db.expire_all()
    assert db.get(Order, order.id).status == "canceled"
    problem = _problem(
        order,
        get_plan("users-50"),
        get_subscription_state(db, account.id, TODAY),
        list_order_topups(db, order.id),
    )
    assert problem == f"заказ № {order.id} отменён"
    order.status = "pending"  # as if it had been paid for at this very moment: still refused, for the period
    problem = _problem(
        order,
        get_plan("users-50"),
        get_subscription_state(db, account.id, TODAY),
        list_order_topups(db, order.id),
    )
    assert problem == "оплаченный период с 10.03.2027, который повышала доплата, уже начался, отменён или изменился"
    db.rollback()
    try:
        apply_paid_order(db, order.id, now=TODAY, reference="late")
        raise AssertionError("an order for a canceled period was applied")
    except PurchaseError:
        db.rollback()
    assert get_subscription_state(db, account.id, TODAY).plan.code == "users-24"
