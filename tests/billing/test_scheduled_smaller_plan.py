"""A smaller plan chosen during a long paid period is scheduled without taking money: the dashboard says when it
begins and when it is paid, the tick opens its payment 14 days before (once), and it can be cancelled until then."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from portal.audit import AuditLog
from portal.billing.models import Order
from portal.billing.orders import create_order, list_scheduled_orders
from portal.billing.settlement import apply_paid_order, order_problem
from portal.billing.subscriptions import get_effective_plan, get_subscription_state
from portal.billing.tick import tick
from tests.billing import test_checkout as checkout_tests
from tests.billing.conftest import new_key, page_text
from tests.billing.terms import msk, period_total
from tests.billing.test_checkout import form_fields, rub
from tests.conftest import post

owner = checkout_tests.owner  # signed in, 10.03.2026
handlers = checkout_tests.handlers

BOUGHT = msk(2026, 3, 10, 15)  # users-24 for 12 months: the smaller plan begins 10.03.2027
OPENS = date(2027, 2, 24)  # 14 days before


def schedule_smaller(db, account, payer_type="invoice", now=BOUGHT):
    order = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code="users-12",
        months=6,
        payer_type=payer_type,
        license_version="2026-01",
        idempotency_key=new_key(),
        now=now,
        defer_days=14,
    )
    db.commit()
    return order


def opened_audits(db, account_id) -> int:
    return db.scalar(
        sa.select(sa.func.count())
        .select_from(AuditLog)
        .where(AuditLog.account_id == account_id, AuditLog.action == "billing.scheduled_order_opened")
    )


def test_checkout_schedules_the_smaller_plan_without_taking_money(client, owner, db, buy, handlers):
    buy(owner, "users-24", 12, BOUGHT)
    resp = client.get("/checkout?plan=users-12&months=6")
    text = page_text(resp)
    assert "Сейчас платить не нужно" in text and "оплата откроется 24.02.2027" in text
    assert f"К оплате с 24.02.2027 {rub(period_total('users-12', 6))}" in text
    assert "Запланировать переход · оплата с 24.02.2027" in text
    fields = form_fields(resp.get_data(as_text=True))
    resp = post(client, "/checkout?plan=users-12&months=6", {**fields, "payer_type": "card", "accept_license": "y"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    assert handlers == []  # no card payment started, no invoice
    [order] = db.scalars(sa.select(Order).where(Order.kind == "downgrade")).all()
    assert (order.status, order.opens_on, order.starts_on, order.expires_at) == (
        "scheduled",
        OPENS,
        date(2027, 3, 10),
        None,
    )
    home = page_text(client.get("/"))
    assert "Переход запланирован" in home
    assert "С 10.03.2027 — тариф 12 пользователей, оплата с 24.02.2027" in home
    # Cancelled from the dashboard at any time before: nothing was paid, nothing to give back.
    assert post(client, f"/orders/{order.id}/cancel").status_code == 302
    db.expire_all()
    assert db.get(Order, order.id).status == "canceled"
    assert "С 10.03.2027 — тариф" not in page_text(client.get("/"))


def test_a_smaller_plan_that_begins_within_14_days_is_paid_now(db, make_account, buy):
    account = make_account()
    buy(account, "users-24", 6, BOUGHT)  # ends 10.09.2026
    order = schedule_smaller(db, account, now=msk(2026, 8, 30))
    assert (order.status, order.opens_on) == ("pending", None)


def test_the_tick_opens_the_payment_once_when_the_start_comes_near(db, make_account, buy):
    account = make_account()
    buy(account, "users-24", 12, BOUGHT)
    order = schedule_smaller(db, account)
    # Money cannot be applied to it before: nothing is asked for yet.
    assert "ещё не выставлен к оплате" in order_problem(db, order, msk(2026, 6, 1))
    db.rollback()
    tick(db, msk(2027, 2, 23, 23, 50))
    db.expire_all()
    assert db.get(Order, order.id).status == "scheduled"
    tick(db, msk(2027, 2, 24, 0, 5))
    tick(db, msk(2027, 2, 24, 0, 6))
    db.expire_all()
    opened = db.get(Order, order.id)
    assert opened.status == "pending" and opened.expires_at is not None
    assert opened_audits(db, account.id) == 1
    assert order_problem(db, opened, msk(2027, 2, 25)) is None
    db.rollback()
    # Paid before its start, it follows the paid period as any smaller plan does.
    assert apply_paid_order(db, order.id, now=msk(2027, 3, 1), reference="late-but-in-time")
    db.commit()
    [later] = get_subscription_state(db, account.id, msk(2027, 3, 1)).scheduled
    assert (later.plan.code, later.starts_on) == ("users-12", date(2027, 3, 10))


def test_unpaid_at_its_start_the_order_lapses_and_the_free_plan_applies(db, make_account, buy):
    account = make_account()
    buy(account, "users-24", 12, BOUGHT)
    order = schedule_smaller(db, account, payer_type="card")
    tick(db, msk(2027, 2, 24, 1))
    tick(db, msk(2027, 3, 10, 1))
    db.expire_all()
    assert db.get(Order, order.id).status == "expired"
    assert get_effective_plan(db, account.id, msk(2027, 3, 10, 12)).code == "users-5"


def test_choosing_another_plan_for_the_same_start_replaces_the_scheduled_one(db, make_account, buy):
    account = make_account()
    buy(account, "users-24", 12, BOUGHT)
    first = schedule_smaller(db, account)
    second = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code="users-12",
        months=12,
        payer_type="invoice",
        license_version="2026-01",
        idempotency_key=new_key(),
        now=BOUGHT,
        defer_days=14,
    )
    db.commit()
    db.expire_all()
    assert (db.get(Order, first.id).status, db.get(Order, second.id).status) == ("canceled", "scheduled")
    assert [o.id for o in list_scheduled_orders(db, account.id)] == [second.id]


def test_ticks_on_several_servers_open_each_scheduled_order_once(pg_url, app, db, make_account, buy):
    from tests.billing.test_concurrency_pg import _run_together

    accounts = [make_account() for _ in range(3)]
    orders = []
    for account in accounts:
        buy(account, "users-24", 12, BOUGHT)
        orders.append(schedule_smaller(db, account))
    maker = app.extensions["portal.db"].sessionmaker

    def run_tick(i):
        with maker() as session:
            return tick(session, msk(2027, 2, 24, 0, 5))

    results = _run_together(4, run_tick)
    assert sum(1 for r in results for line in r if "открыт для оплаты" in line) == 3
    db.expire_all()
    assert [db.get(Order, o.id).status for o in orders] == ["pending"] * 3
    assert sum(opened_audits(db, a.id) for a in accounts) == 3
