"""A scheduled change (a prepaid next period) can be cancelled before it starts: the money paid for it goes to the
company's balance, its period never begins and no УПД is formed for it."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from portal.accounts.models import Role
from portal.audit import AuditLog
from portal.billing.models import SubscriptionPeriod
from portal.billing.orders import cancel_scheduled_period, create_order
from portal.billing.subscriptions import PurchaseError, get_subscription_state
from portal.billing.tick import tick
from portal.db import utcnow
from portal.documents.models import Invoice, Upd
from portal.documents.service import number_due_upds
from portal.payments import ledger
from portal.timeutil import msk_date, msk_midnight
from tests.conftest import post
from tests.documents.factories import give_requisites, payment
from tests.payments.test_ledger import import_, invoice_for, order

OWNER = "+79161112200"
ACCOUNTANT = "+79161112201"


def paid_by_invoice(app, db, account, plan: str, months: int, number: str):
    now = utcnow()
    row = order(db, account, plan, months, now=now)
    inv = invoice_for(app, db, row, now=now)
    import_(app, db, payment(number, inv.amount, f"Оплата по счёту № {inv.number}", day=msk_date(now)), now=now)
    db.expire_all()
    return row, db.get(Invoice, inv.id)


def company_with_a_prepaid_next_period(app, db, make_account):
    account = make_account(name="ООО «Ромашка»", owner_phone=OWNER)
    give_requisites(db, account)
    paid_by_invoice(app, db, account, "users-24", 6, "801")
    renewal, inv = paid_by_invoice(app, db, account, "users-24", 6, "802")
    assert renewal.kind == "renewal" and inv.upd_due_on == renewal.starts_on
    return account, renewal, inv


def test_cancelling_a_prepaid_next_period_puts_its_money_on_the_balance_and_no_upd_is_formed(
    app, db, client, auth, make_account
):
    account, renewal, inv = company_with_a_prepaid_next_period(app, db, make_account)
    [scheduled] = get_subscription_state(db, account.id, utcnow()).scheduled
    auth.login(OWNER)
    home = client.get("/").get_data(as_text=True)
    assert f"/plans/scheduled/{scheduled.id}/cancel" in home

    page = client.get(f"/plans/scheduled/{scheduled.id}/cancel").get_data(as_text=True)
    assert "Отменить запланированный период?" in page
    assert "11\u00a0940,00\u00a0₽, оплаченные за этот период, вернутся на баланс" in page
    resp = post(client, f"/plans/scheduled/{scheduled.id}/cancel")
    assert resp.status_code == 302
    home = client.get("/").get_data(as_text=True)
    assert "отменён" in home and "на балансе компании" in home

    db.expire_all()
    state = get_subscription_state(db, account.id, utcnow())
    assert state.scheduled == [] and state.paid_until == renewal.starts_on - timedelta(days=1)
    assert db.get(SubscriptionPeriod, scheduled.id).status == "replaced"
    assert ledger.account_balance(db, account.id) == renewal.amount
    assert ledger.list_attention(db, account.id) == []  # the owner chose it: nothing for staff to look at
    assert db.get(Invoice, inv.id).upd_due_on is None
    # The day the period would have begun: no УПД for rights never granted.
    with app.app_context():
        number_due_upds(db, now=utcnow() + timedelta(days=200), config=app.config)
    assert db.scalar(sa.select(sa.func.count()).select_from(Upd).where(Upd.invoice_id == inv.id)) == 0
    actions = list(db.scalars(sa.select(AuditLog.action).where(AuditLog.account_id == account.id)))
    assert {"billing.scheduled_change_canceled", "payments.released", "documents.upd_not_due"} <= set(actions)

    # Changed instead: the balance pays a smaller plan for the same months at checkout, without a card or invoice.
    smaller = order(db, account, "users-12", 6, payer_type="card", now=utcnow())
    with app.app_context():
        assert ledger.settle_from_balance(db, smaller, now=utcnow(), config=app.config, actor=None)
    db.commit()
    [next_period] = get_subscription_state(db, account.id, utcnow()).scheduled
    assert (next_period.plan.code, next_period.starts_on) == ("users-12", renewal.starts_on)
    assert ledger.account_balance(db, account.id) == renewal.amount - smaller.amount


def test_only_the_owner_cancels_and_only_a_period_that_has_not_begun(app, db, client, auth, make_account, add_member):
    account, _renewal, _inv = company_with_a_prepaid_next_period(app, db, make_account)
    add_member(account, ACCOUNTANT, "Бухгалтер", Role.ACCOUNTANT)
    state = get_subscription_state(db, account.id, utcnow())
    [scheduled] = state.scheduled
    auth.login(ACCOUNTANT)
    page = client.get(f"/plans/scheduled/{scheduled.id}/cancel").get_data(as_text=True)
    assert "может владелец аккаунта" in page and "Отменить период" not in page
    assert post(client, f"/plans/scheduled/{scheduled.id}/cancel").status_code == 403  # the owner confirms
    # The running period is no scheduled change: the page says so and changes nothing.
    auth.logout()
    auth.login(OWNER)
    resp = client.get(f"/plans/scheduled/{state.current.id}/cancel")
    assert resp.status_code == 404
    db.expire_all()
    assert len(get_subscription_state(db, account.id, utcnow()).scheduled) == 1
    assert ledger.account_balance(db, account.id) == 0


def test_another_companys_period_cannot_be_cancelled(app, db, client, auth, make_account):
    account, _renewal, _inv = company_with_a_prepaid_next_period(app, db, make_account)
    [scheduled] = get_subscription_state(db, account.id, utcnow()).scheduled
    make_account(name="ООО «Василёк»", owner_phone="+79161119999")
    auth.login("+79161119999")
    post(client, f"/plans/scheduled/{scheduled.id}/cancel")
    db.expire_all()
    assert db.get(SubscriptionPeriod, scheduled.id).status == "active"


def test_with_two_prepaid_periods_the_earlier_one_cannot_go_first(app, db, make_account):
    account, _renewal, _inv = company_with_a_prepaid_next_period(app, db, make_account)
    paid_by_invoice(app, db, account, "users-24", 6, "803")
    first, second = get_subscription_state(db, account.id, utcnow()).scheduled
    try:
        cancel_scheduled_period(db, account_id=account.id, period_id=first.id, actor=None, reason="тест", now=utcnow())
        raise AssertionError("the earlier period was cancelled with a later one paid")
    except PurchaseError as exc:
        assert "сначала отмените его" in str(exc)
    db.rollback()
    cancel_scheduled_period(db, account_id=account.id, period_id=second.id, actor=None, reason="т", now=utcnow())
    cancel_scheduled_period(db, account_id=account.id, period_id=first.id, actor=None, reason="т", now=utcnow())
    db.commit()
    assert get_subscription_state(db, account.id, utcnow()).scheduled == []


def test_an_upgrades_checkout_shows_the_prepaid_next_period_it_leaves_small(app, db, client, auth, make_account):
    account, renewal, _inv = company_with_a_prepaid_next_period(app, db, make_account)
    [scheduled] = get_subscription_state(db, account.id, utcnow()).scheduled
    auth.login(OWNER)
    page = client.get("/checkout?plan=users-50&months=6").get_data(as_text=True).replace("\u00a0", " ")
    assert 'id="checkout-next-periods"' in page
    last = renewal.ends_on - timedelta(days=1)
    # Offered ticked: raised in the same payment, the list says so.
    assert f"«50 пользователей» с {renewal.starts_on:%d.%m.%Y} по {last:%d.%m.%Y} — вместо «24 пользователя»" in page
    # Unticked, the period keeps its plan, and the page says it and how to cancel it.
    page = client.get("/checkout?plan=users-50&months=6&topups_choice=1").get_data(as_text=True)
    page = page.replace("\u00a0", " ")
    assert f"«24 пользователя» с {renewal.starts_on:%d.%m.%Y} по {last:%d.%m.%Y} — только 24 пользователя" in page
    assert f"/plans/scheduled/{scheduled.id}/cancel" in page
    # A renewal's checkout touches no other period: nothing to warn about.
    page = client.get("/checkout?plan=users-24&months=6").get_data(as_text=True)
    assert 'id="checkout-next-periods"' not in page


def test_a_card_paid_renewal_cancelled_before_it_begins_is_no_transfer_of_rights_in_the_act(app, db, make_account):
    from portal.documents import reconciliation
    from tests.payments.test_ledger import pay_by_card

    account = make_account(name="ООО «Ромашка»", owner_phone=OWNER)
    give_requisites(db, account)
    now = utcnow()
    pay_by_card(app, db, order(db, account, "users-12", 6, payer_type="card", now=now), now=now)
    renewal = order(db, account, "users-12", 6, payer_type="card", now=now)
    pay_by_card(app, db, renewal, now=now)
    [scheduled] = get_subscription_state(db, account.id, now).scheduled
    cancel_scheduled_period(db, account_id=account.id, period_id=scheduled.id, actor=None, reason="т", now=now)
    db.commit()
    end = renewal.ends_on + timedelta(days=1)
    with app.app_context():
        act = reconciliation.build_reconciliation(db, account.id, msk_date(now), end, app.config)
    shipped = [line.title for line in act.lines if line.debit]
    assert len(shipped) == 1 and f"№ {renewal.id}" not in shipped[0], shipped
    assert ledger.account_balance(db, account.id) == renewal.amount


def test_changing_a_prepaid_period_cancels_it_and_opens_checkout_of_the_other_plan_for_the_same_day(
    app, db, client, auth, make_account
):
    account, renewal, _inv = company_with_a_prepaid_next_period(app, db, make_account)
    [scheduled] = get_subscription_state(db, account.id, utcnow()).scheduled
    auth.login(OWNER)
    page = client.get(f"/plans/scheduled/{scheduled.id}/cancel").get_data(as_text=True).replace("\u00a0", " ")
    assert f"Или изменить: другой тариф с {renewal.starts_on:%d.%m.%Y}" in page
    assert 'value="users-12"' in page and 'value="users-50"' not in page  # a bigger plan is an upgrade from today
    # A choice not offered changes nothing.
    resp = post(client, f"/plans/scheduled/{scheduled.id}/cancel", {"then_plan": "users-50", "then_months": "6"})
    assert resp.status_code == 400 and "Выберите тариф из списка" in resp.get_data(as_text=True)
    db.expire_all()
    assert db.get(SubscriptionPeriod, scheduled.id).status == "active"

    resp = post(client, f"/plans/scheduled/{scheduled.id}/cancel", {"then_plan": "users-12", "then_months": "6"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/checkout?plan=users-12&months=6"
    checkout = client.get(resp.headers["Location"]).get_data(as_text=True).replace("\u00a0", " ")
    assert "отменён" in checkout and "баланс пойдёт в его оплату первым" in checkout
    assert f"«12 пользователей» начнётся {renewal.starts_on:%d.%m.%Y}" in checkout
    db.expire_all()
    assert db.get(SubscriptionPeriod, scheduled.id).status == "replaced"
    assert ledger.account_balance(db, account.id) == renewal.amount


def test_a_smaller_plan_scheduled_unpaid_is_paid_from_the_balance_when_its_payment_opens(app, db, make_account):
    account, renewal, _inv = company_with_a_prepaid_next_period(app, db, make_account)
    [scheduled] = get_subscription_state(db, account.id, utcnow()).scheduled
    cancel_scheduled_period(db, account_id=account.id, period_id=scheduled.id, actor=None, reason="т", now=utcnow())
    db.commit()
    smaller = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code="users-12",
        months=6,
        payer_type="invoice",
        license_version="2026-01",
        idempotency_key="scheduled-unpaid-1",
        now=utcnow(),
        defer_days=14,
    )
    db.commit()
    assert smaller.status == "scheduled" and smaller.starts_on == renewal.starts_on
    with app.app_context():
        tick(db, msk_midnight(smaller.opens_on) + timedelta(hours=1))
        tick(db, msk_midnight(smaller.opens_on) + timedelta(hours=2))
    db.expire_all()
    assert db.get(type(smaller), smaller.id).status == "paid"
    assert ledger.account_balance(db, account.id) == renewal.amount - smaller.amount
    assert db.scalar(sa.select(sa.func.count()).select_from(Invoice).where(Invoice.order_id == smaller.id)) == 0


def test_without_a_balance_the_opened_order_gets_one_invoice_and_the_people_are_told(app, db, make_account):
    from portal.notices.service import due_letters

    account = make_account(name="ООО «Ромашка»", owner_phone=OWNER)
    give_requisites(db, account)
    paid_by_invoice(app, db, account, "users-24", 12, "811")
    smaller = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code="users-12",
        months=6,
        payer_type="invoice",
        license_version="2026-01",
        idempotency_key="scheduled-unpaid-2",
        now=utcnow(),
        defer_days=14,
    )
    db.commit()
    opens = msk_midnight(smaller.opens_on) + timedelta(hours=1)
    with app.app_context():
        tick(db, opens)
        tick(db, opens + timedelta(minutes=1))
    db.expire_all()
    [inv] = db.scalars(sa.select(Invoice).where(Invoice.order_id == smaller.id)).all()
    assert inv.amount == smaller.amount and inv.status == "issued"
    letters = [
        letter for letter in due_letters(db, opens, "http://portal") if letter.event_key.startswith("scheduled-opened")
    ]
    assert len(letters) == 1 and letters[0].topic == "invoices"
    assert f"Пора оплатить его: {smaller.amount // 100:,}".replace(",", "\u00a0") in letters[0].body


def test_ticks_on_several_servers_issue_one_invoice_for_an_opened_order(pg_url, app, db, make_account):
    import threading

    account = make_account(name="ООО «Ромашка»", owner_phone=OWNER)
    give_requisites(db, account)
    paid_by_invoice(app, db, account, "users-24", 12, "821")
    smaller = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code="users-12",
        months=6,
        payer_type="invoice",
        license_version="2026-01",
        idempotency_key="scheduled-unpaid-3",
        now=utcnow(),
        defer_days=14,
    )
    db.commit()
    opens = msk_midnight(smaller.opens_on) + timedelta(hours=1)
    maker = app.extensions["portal.db"].sessionmaker
    barrier = threading.Barrier(4)
    errors = []

    def run_tick():
        try:
            barrier.wait(timeout=10)
            with app.app_context(), maker() as session:
                tick(session, opens)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run_tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    db.expire_all()
    assert db.scalar(sa.select(sa.func.count()).select_from(Invoice).where(Invoice.order_id == smaller.id)) == 1
    opened = db.scalar(
        sa.select(sa.func.count())
        .select_from(AuditLog)
        .where(AuditLog.account_id == account.id, AuditLog.action == "billing.scheduled_order_opened")
    )
    assert opened == 1
