"""The owner pays through the local sandbox acquirer, end to end through the test client."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import sqlalchemy as sa

from portal.billing.models import SubscriptionPeriod
from portal.billing.pricing import add_months
from portal.billing.subscriptions import get_subscription_state
from portal.db import utcnow
from portal.payments.models import PaymentNotification, SandboxPayment
from portal.payments.providers.sandbox import SIGNATURE_HEADER, sign
from portal.timeutil import format_date_ru, msk_date
from tests.conftest import csrf_token
from tests.payments.conftest import audit_actions, only_order, payments_of, replay

SANDBOX_URL = re.compile(r"^http://localhost/sandbox/pay/(sbx_[0-9a-f]+)$")


def pay_with_card(client, pay_url: str, number: str, expiry: str = "12/30", cvc: str = "123"):
    path = pay_url.removeprefix("http://localhost")
    page = client.get(path)
    assert page.status_code == 200
    return client.post(
        path,
        data={"csrf_token": csrf_token(client), "number": number, "expiry": expiry, "cvc": cvc, "action": "card"},
    )


def test_card_payment_activates_the_plan_and_the_return_page_shows_it(app, client, db, owner, checkout, deliveries):
    resp = checkout("users-12", 9)
    assert resp.status_code == 302
    pay_url = resp.headers["Location"]
    assert SANDBOX_URL.match(pay_url), pay_url

    page = client.get(pay_url.removeprefix("http://localhost")).get_data(as_text=True)
    assert "ООО «Мессенджер Плюс»" in page  # the merchant
    assert "8\u00a0464,50\u00a0₽" in page  # 990 ₽ × 9 − 5 %
    assert "тариф «12 пользователей», 9 мес." in page
    assert 'class="page-sandbox"' in page

    resp = pay_with_card(client, pay_url, "4111 1111 1111 1111")
    order = only_order(db, owner.id)
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"http://localhost/payments/return/{order.id}"
    # The sandbox told the webhook before sending the payer back, signed like a provider.
    [(url, body, headers)] = deliveries.sent
    assert url == "http://localhost/payments/webhook/sandbox"
    assert headers[SIGNATURE_HEADER] == sign("test-webhook-secret", body)
    assert json.loads(body)["event"] == "payment.succeeded"
    assert deliveries.answers == [200]

    assert order.status == "paid"
    [payment] = payments_of(db, owner.id)
    assert (payment.status, payment.method, payment.amount) == ("succeeded", "bank_card", 846450)
    assert order.payment_reference == f"sandbox:{payment.provider_payment_id}"
    state = get_subscription_state(db, owner.id, utcnow())
    today = msk_date(utcnow())
    assert (state.status, state.plan.code) == ("paid", "users-12")
    assert state.paid_until == add_months(today, 9) - timedelta(days=1)
    assert audit_actions(db, owner.id).count("billing.order_paid") == 1
    assert "payment.succeeded" in audit_actions(db, owner.id)

    page = client.get(f"/payments/return/{order.id}").get_data(as_text=True)
    assert "Оплата прошла" in page
    assert "12 пользователей" in page
    assert format_date_ru(state.paid_until) in page
    assert "Банковская карта" in page
    assert "payment_status.js" not in page  # nothing left to poll


def test_declined_card_shows_the_reason_and_changes_nothing(client, db, owner, checkout, deliveries):
    pay_url = checkout("users-24", 12).headers["Location"]
    resp = pay_with_card(client, pay_url, "4000 0000 0000 0002")
    order = only_order(db, owner.id)
    assert resp.headers["Location"].endswith(f"/payments/return/{order.id}")
    assert json.loads(deliveries.sent[0][1])["event"] == "payment.canceled"

    assert order.status == "pending"
    [payment] = payments_of(db, owner.id)
    assert (payment.status, payment.status_reason) == ("canceled", "insufficient_funds")
    assert get_subscription_state(db, owner.id, utcnow()).status == "free"
    actions = audit_actions(db, owner.id)
    assert "payment.canceled" in actions and "billing.order_paid" not in actions

    page = client.get(f"/payments/return/{order.id}").get_data(as_text=True)
    assert "Платёж не прошёл" in page
    assert "Недостаточно средств" in page
    assert 'href="/checkout?plan=users-24&amp;months=12"' in page  # try again with the same plan and period


def test_paying_again_after_a_decline_on_the_same_order_makes_a_new_provider_payment(
    client, db, owner, checkout, deliveries
):
    checkout_page = client.get("/checkout?plan=users-12&months=6").get_data(as_text=True)
    first = checkout("users-12", 6, page=checkout_page).headers["Location"]
    pay_with_card(client, first, "4000 0000 0000 0002")
    # The browser's Back button and the same form again: the same order, but the declined payment is final.
    second = checkout("users-12", 6, page=checkout_page).headers["Location"]
    assert SANDBOX_URL.match(second) and second != first
    pay_with_card(client, second, "4111 1111 1111 1111")
    assert only_order(db, owner.id).status == "paid"
    assert [p.status for p in payments_of(db, owner.id)] == ["canceled", "succeeded"]


def test_yoomoney_button_pays_and_history_shows_the_method(client, db, owner, checkout, deliveries):
    pay_url = checkout("users-12", 6).headers["Location"]
    path = pay_url.removeprefix("http://localhost")
    resp = client.post(path, data={"csrf_token": csrf_token(client, path), "action": "yoo_money"})
    assert resp.status_code == 302
    assert only_order(db, owner.id).status == "paid"

    page = client.get("/payments").get_data(as_text=True)
    assert "ЮMoney" in page
    assert "Оплачен" in page
    assert "12 пользователей" in page
    assert "5\u00a0940,00\u00a0₽" in page  # 990 ₽ × 6, no discount
    [payment] = payments_of(db, owner.id)
    assert f'href="http://localhost/sandbox/receipt/{payment.provider_payment_id}"' in page
    receipt = client.get(f"/sandbox/receipt/{payment.provider_payment_id}").get_data(as_text=True)
    assert "Кассовый чек" in receipt and "Без НДС" in receipt and "5\u00a0940,00\u00a0₽" in receipt


def test_pressing_pay_twice_reaches_the_same_payment(client, db, owner, checkout, deliveries):
    page = client.get("/checkout?plan=users-12&months=12").get_data(as_text=True)
    first = checkout(page=page).headers["Location"]
    second = checkout(page=page).headers["Location"]
    assert first == second
    assert len(payments_of(db, owner.id)) == 1
    assert db.scalar(sa.select(sa.func.count()).select_from(SandboxPayment)) == 1


def test_notification_replayed_ten_times_extends_once(app, client, db, owner, checkout, deliveries):
    pay_with_card(client, checkout("users-12", 6).headers["Location"], "4111111111111111")
    delivery = deliveries.sent[0]
    for _ in range(10):
        resp = replay(app, delivery)
        assert resp.status_code == 200
        assert resp.get_json() == {"status": "succeeded", "outcome": "already_settled"}
    assert audit_actions(db, owner.id).count("billing.order_paid") == 1
    assert db.scalar(sa.select(sa.func.count()).select_from(SubscriptionPeriod)) == 1
    state = get_subscription_state(db, owner.id, utcnow())
    assert state.paid_until == add_months(msk_date(utcnow()), 6) - timedelta(days=1)
    outcomes = db.scalars(sa.select(PaymentNotification.outcome).order_by(PaymentNotification.id)).all()
    assert outcomes == ["activated"] + ["already_settled"] * 10


def test_return_page_settles_the_payment_when_the_notification_is_lost(app, client, db, owner, checkout, deliveries):
    deliveries.fail = True
    resp = pay_with_card(client, checkout("users-12", 6).headers["Location"], "4111111111111111")
    order = only_order(db, owner.id)
    assert order.status == "pending"  # nobody has told the portal yet
    assert client.get(f"/payments/status/{order.id}").get_json()["state"] == "paid"  # the status check re-reads
    assert only_order(db, owner.id).status == "paid"
    assert "Оплата прошла" in client.get(resp.headers["Location"]).get_data(as_text=True)
    # The provider's notification arrives late: seen twice, applied once.
    assert replay(app, deliveries.sent[0]).get_json()["outcome"] == "already_settled"
    assert audit_actions(db, owner.id).count("billing.order_paid") == 1


def test_pending_payment_page_polls_and_has_a_no_script_fallback(client, db, owner, checkout, deliveries):
    checkout("users-12", 6)
    order = only_order(db, owner.id)
    page = client.get(f"/payments/return/{order.id}").get_data(as_text=True)
    assert "Платёж обрабатывается" in page
    assert "js/payment_status.js" in page
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page
    assert "Проверить ещё раз" in page
    data = client.get(f"/payments/status/{order.id}").get_json()
    assert data == {
        "order_id": order.id,
        "order_status": "pending",
        "state": "pending",
        "final": False,
        "payment_status": "pending",
    }


def test_payer_refusing_on_the_acquirer_page_is_recorded(client, db, owner, checkout, deliveries):
    path = checkout("users-12", 6).headers["Location"].removeprefix("http://localhost")
    client.post(path, data={"csrf_token": csrf_token(client, path), "action": "cancel"})
    [payment] = payments_of(db, owner.id)
    assert (payment.status, payment.status_reason) == ("canceled", "payer_canceled")
    page = client.get(f"/payments/return/{payment.order_id}").get_data(as_text=True)
    assert "Оплата отменена на странице платёжной системы" in page
    # The heading says what happened: the payer stopped, nothing failed (it said «Платёж не прошёл»).
    assert "<h1>Оплата отменена</h1>" in page and "Платёж не прошёл" not in page
    # The history says so too, and offers to pay again.
    history = client.get("/payments").get_data(as_text=True)
    assert "Не прошёл" in history and "Оплатить снова" in history
    assert 'href="/checkout?plan=users-12&amp;months=6"' in history


def test_an_abandoned_payment_page_is_shown_as_such_not_as_processing(app, client, db, owner, checkout, deliveries):
    """A payer who closed the sandbox page saw «Обрабатывается» in /payments for a day."""
    checkout("users-12", 6)
    history = client.get("/payments").get_data(as_text=True)
    assert "Обрабатывается" in history and "Оплатить снова" not in history  # a fresh attempt may still be paid
    [payment] = payments_of(db, owner.id)
    payment.created_at = utcnow() - timedelta(hours=1)
    db.commit()
    history = client.get("/payments").get_data(as_text=True)
    assert "Обрабатывается" not in history
    assert "Не завершён" in history and "деньги не списаны" in history and "Оплатить снова" in history


def test_card_form_errors_are_shown_next_to_the_field_and_change_nothing(client, db, owner, checkout, deliveries):
    pay_url = checkout("users-12", 6).headers["Location"]
    cases = [
        ("4111 1111 1111 1112", "12/30", "123", "Неверный номер карты"),
        ("4111 1111 1111 1111", "01/20", "123", "Срок действия карты истёк"),
        ("4111 1111 1111 1111", "12/30", "1", "CVC — три цифры"),
    ]
    for number, expiry, cvc, message in cases:
        resp = pay_with_card(client, pay_url, number, expiry, cvc)
        assert resp.status_code == 400
        assert message in resp.get_data(as_text=True)
    assert deliveries.sent == []
    assert payments_of(db, owner.id)[0].status == "pending"
    assert db.scalars(sa.select(SandboxPayment.status)).one() == "pending"


def test_a_settled_sandbox_payment_cannot_be_paid_again(client, db, owner, checkout, deliveries):
    pay_url = checkout("users-12", 6).headers["Location"]
    pay_with_card(client, pay_url, "4000000000000002")
    resp = pay_with_card(client, pay_url, "4111111111111111")
    assert resp.status_code == 200
    assert "Платёж отменён" in resp.get_data(as_text=True)
    assert len(deliveries.sent) == 1
    assert only_order(db, owner.id).status == "pending"


def test_tick_leaves_a_fresh_payment_alone_and_closes_one_the_payer_abandoned(
    app, client, db, owner, checkout, deliveries
):
    checkout("users-12", 6)
    runner = app.test_cli_runner()
    soon = (utcnow() + timedelta(minutes=2)).isoformat()
    assert "платёж" not in runner.invoke(args=["billing", "tick", "--now", soon]).output
    assert payments_of(db, owner.id)[0].status == "pending"

    sandbox = app.extensions["portal.payments.providers"]["sandbox"]
    real_clock = sandbox.clock
    sandbox.clock = lambda: real_clock() + timedelta(hours=2)  # the acquirer gives up on unconfirmed payments
    later = (utcnow() + timedelta(hours=2)).isoformat()
    output = runner.invoke(args=["billing", "tick", "--now", later]).output
    assert "не прошёл — Время на оплату истекло" in output
    [payment] = payments_of(db, owner.id)
    assert (payment.status, payment.status_reason) == ("canceled", "expired_on_confirmation")
    assert only_order(db, owner.id).status == "pending"


def test_forged_and_malformed_notifications_are_refused_and_change_nothing(
    app, client, db, owner, checkout, deliveries
):
    deliveries.fail = True  # keep the genuine notification away from the portal
    pay_with_card(client, checkout("users-12", 6).headers["Location"], "4111111111111111")
    url, body, headers = deliveries.sent[0]
    webhook = app.test_client()

    forged = body.replace(b'"value":"5940.00"', b'"value":"1.00"')
    assert forged != body
    resp = webhook.post("/payments/webhook/sandbox", data=forged, headers=headers)
    assert (resp.status_code, resp.get_json()) == (401, {"error": "Подпись уведомления неверна."})

    other_secret = {**headers, SIGNATURE_HEADER: sign("someone-elses-secret", body)}
    assert webhook.post("/payments/webhook/sandbox", data=body, headers=other_secret).status_code == 401

    garbage = b"\xff\xfe not json"
    resp = webhook.post(
        "/payments/webhook/sandbox", data=garbage, headers={SIGNATURE_HEADER: sign("test-webhook-secret", garbage)}
    )
    assert (resp.status_code, resp.get_json()) == (400, {"error": "Тело уведомления — не JSON."})

    unknown = json.dumps(
        {"type": "notification", "event": "payment.succeeded", "object": {"id": "sbx_000000000000000000000000"}}
    ).encode()
    resp = webhook.post(
        "/payments/webhook/sandbox", data=unknown, headers={SIGNATURE_HEADER: sign("test-webhook-secret", unknown)}
    )
    assert (resp.status_code, resp.get_json()["status"]) == (200, "unknown_payment")

    huge = b"{" + b" " * 70_000 + b"}"
    assert (
        webhook.post(
            "/payments/webhook/sandbox", data=huge, headers={SIGNATURE_HEADER: sign("test-webhook-secret", huge)}
        ).status_code
        == 413
    )

    assert only_order(db, owner.id).status == "pending"
    assert "billing.order_paid" not in audit_actions(db, owner.id)
    # The genuine notification still works afterwards.
    assert replay(app, (url, body, headers)).get_json() == {"status": "succeeded", "outcome": "activated"}


def test_amount_reported_by_the_sandbox_differs_from_the_order_so_the_payment_is_flagged(
    app, client, db, owner, checkout, deliveries
):
    pay_url = checkout("users-12", 6).headers["Location"]
    # The acquirer's own record says a different sum (as if the payer had been charged something else).
    db.execute(sa.update(SandboxPayment).values(amount=100))
    db.commit()
    pay_with_card(client, pay_url, "4111111111111111")
    assert deliveries.answers == [200]  # processed and flagged: nothing for the sandbox to redeliver
    [payment] = payments_of(db, owner.id)
    assert (payment.status, payment.status_reason) == ("flagged", "amount_mismatch")
    assert "1,00\u00a0₽" in payment.status_detail and "5\u00a0940,00\u00a0₽" in payment.status_detail
    assert only_order(db, owner.id).status == "pending"
    assert get_subscription_state(db, owner.id, utcnow()).status == "free"
    assert "payment.flagged" in audit_actions(db, owner.id)
    assert "Платёж на проверке" in client.get(f"/payments/return/{payment.order_id}").get_data(as_text=True)
