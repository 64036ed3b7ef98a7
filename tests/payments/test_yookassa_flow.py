"""The portal with PAYMENT_PROVIDER=yookassa: checkout, webhook, time-outs, `billing tick`; HTTP answered locally."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
import responses
import sqlalchemy as sa

from portal.billing.subscriptions import get_subscription_state
from portal.db import utcnow
from portal.payments.models import Payment, PaymentNotification
from tests.conftest import post
from tests.payments.conftest import audit_actions, only_order, payments_of

API = "https://api.yookassa.ru/v3/payments"
PID = "2e5a3b1c-000f-5000-9000-1b68e7b15f3f"
YOOKASSA_IP = "185.71.76.10"


@pytest.fixture
def vat_rate() -> str:
    return ""  # exempt, the default


@pytest.fixture
def app_config(app_config, vat_rate):
    app_config.update(
        PAYMENT_PROVIDER="yookassa", YOOKASSA_SHOP_ID="123456", YOOKASSA_SECRET_KEY="test_secret", VAT_RATE=vat_rate
    )
    return app_config


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def payment_json(order_id, status="pending", value="8464.50", currency="RUB", **extra) -> dict:
    obj = {
        "id": PID,
        "status": status,
        "paid": status == "succeeded",
        "amount": {"value": value, "currency": currency},
        "description": f"Лицензия на мессенджер, заказ № {order_id}",
        "metadata": {"order_id": str(order_id), "account_id": "1", "cms_name": "yookassa_sdk_python"},
        "created_at": "2026-11-25T10:00:00.000Z",
        "test": True,
        "refundable": status == "succeeded",
        "recipient": {"account_id": "123456", "gateway_id": "1"},
    }
    if status == "pending":
        obj["confirmation"] = {
            "type": "redirect",
            "confirmation_url": f"https://yoomoney.ru/checkout/payments/v2/contract?orderId={PID}",
        }
    if status == "succeeded":
        obj["payment_method"] = {"type": "bank_card", "id": PID, "saved": False, "title": "Bank card *4444"}
    obj.update(extra)
    return obj


def notification(event="payment.succeeded", **obj) -> bytes:
    body = {"type": "notification", "event": event, "object": {"id": PID, "status": event.split(".")[1], **obj}}
    return json.dumps(body).encode()


def webhook(app, body: bytes, ip: str = YOOKASSA_IP):
    return app.test_client().post(
        "/payments/webhook/yookassa",
        data=body,
        headers={"Content-Type": "application/json"},
        environ_base={"REMOTE_ADDR": ip},
    )


def start_order(api, checkout, db, owner):
    """Checkout with YooKassa answering the create request; returns the order."""
    api.post(API, json=payment_json(1))
    resp = checkout("users-12", 9)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    order = only_order(db, owner.id)
    assert resp.headers["Location"] == f"https://yoomoney.ru/checkout/payments/v2/contract?orderId={PID}"
    return order


def test_checkout_creates_the_payment_with_the_orders_key_and_a_receipt(app, api, db, owner, checkout):
    order = start_order(api, checkout, db, owner)
    [call] = api.calls
    assert call.request.headers["Idempotence-Key"] == order.idempotency_key
    body = json.loads(call.request.body)
    assert body["amount"] == {"value": "8464.50", "currency": "RUB"}
    assert body["capture"] is True
    assert body["confirmation"] == {"type": "redirect", "return_url": f"http://localhost/payments/return/{order.id}"}
    assert body["metadata"]["order_id"] == str(order.id)
    assert body["metadata"]["account_id"] == str(owner.id)
    assert body["receipt"]["customer"] == {"phone": "79161110000"}  # the owner has no e-mail
    [item] = body["receipt"]["items"]
    assert (item["vat_code"], item["payment_subject"], item["payment_mode"]) == (1, "service", "full_prepayment")
    assert item["amount"] == {"value": "8464.50", "currency": "RUB"}
    [payment] = payments_of(db, owner.id)
    assert (payment.provider, payment.provider_payment_id, payment.status) == ("yookassa", PID, "pending")
    assert "payment.started" in audit_actions(db, owner.id)


@pytest.mark.parametrize("vat_rate", ["22"])
def test_vat_22_percent_gives_vat_code_11(make_account, auth, client, checkout, db):
    account = make_account(owner_phone="+79162220000")
    auth.login("+79162220000")
    with responses.RequestsMock() as api:
        api.post(API, json=payment_json(1))
        checkout("users-12", 9)
        assert json.loads(api.calls[0].request.body)["receipt"]["items"][0]["vat_code"] == 11
    assert only_order(db, account.id).status == "pending"


def test_webhook_from_outside_yookassa_ranges_is_refused(app, api, db, owner, checkout):
    order = start_order(api, checkout, db, owner)
    resp = webhook(app, notification(), ip="203.0.113.5")
    assert resp.status_code == 403
    assert resp.get_json() == {"error": "Уведомление пришло не с адреса ЮKassa."}
    assert len(api.calls) == 1  # the API was not even asked
    assert only_order(db, owner.id).status == "pending" and order.status == "pending"


def test_webhook_acts_on_the_api_not_on_the_body(app, api, db, owner, checkout):
    order = start_order(api, checkout, db, owner)
    # The body says "succeeded" (and a different amount); the API says the payer has not paid yet.
    api.get(f"{API}/{PID}", json=payment_json(order.id, "pending"))
    resp = webhook(app, notification(amount={"value": "1.00", "currency": "RUB"}))
    assert resp.status_code == 200 and resp.get_json()["status"] == "pending"
    assert only_order(db, owner.id).status == "pending"

    api.replace(responses.GET, f"{API}/{PID}", json=payment_json(order.id, "succeeded"))
    resp = webhook(app, notification(amount={"value": "1.00", "currency": "RUB"}))
    assert resp.get_json() == {"status": "succeeded", "outcome": "activated"}
    assert only_order(db, owner.id).status == "paid"
    [payment] = payments_of(db, owner.id)
    assert (payment.method, payment.paid_amount) == ("bank_card", 846450)
    assert get_subscription_state(db, owner.id, utcnow()).plan.code == "users-12"


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"value": "100.00"}, "amount_mismatch", "100,00"),
        ({"currency": "USD"}, "currency_mismatch", "USD"),
        ({"order_id": 999}, "order_mismatch", "999"),
    ],
)
def test_mismatch_is_flagged_for_support_and_nothing_is_activated(
    app, api, client, db, owner, checkout, change, reason, detail
):
    order = start_order(api, checkout, db, owner)
    args = {"order_id": order.id, "status": "succeeded", **change}
    api.get(f"{API}/{PID}", json=payment_json(**args))
    resp = webhook(app, notification())
    # Acknowledged (YooKassa would otherwise redeliver for days): processed, flagged, on staff's list.
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "flagged"
    assert detail in resp.get_json()["detail"]
    [payment] = payments_of(db, owner.id)
    assert (payment.status, payment.status_reason) == ("flagged", reason)
    assert only_order(db, owner.id).status == "pending"
    assert get_subscription_state(db, owner.id, utcnow()).status == "free"
    actions = audit_actions(db, owner.id)
    assert "payment.flagged" in actions and "billing.order_paid" not in actions
    # Delivered again: still flagged, still nothing activated.
    again = webhook(app, notification())
    assert (again.status_code, again.get_json()["outcome"]) == (200, "already_settled")
    assert "Платёж на проверке" in client.get(f"/payments/return/{order.id}").get_data(as_text=True)
    assert "На проверке" in client.get("/payments").get_data(as_text=True)


def test_an_unknown_payment_is_acknowledged_kept_for_staff_and_changes_nothing(app, api, db, owner, checkout):
    start_order(api, checkout, db, owner)
    other = "2e5a3b1c-000f-5000-9000-000000000000"
    api.get(f"{API}/{other}", status=404, json={"type": "error", "code": "not_found"})
    body = json.dumps({"type": "notification", "event": "payment.succeeded", "object": {"id": other}}).encode()
    resp = webhook(app, body)
    # Not 404: YooKassa would redeliver an unanswered notification for days.
    assert (resp.status_code, resp.get_json()["status"]) == (200, "unknown_payment")
    assert only_order(db, owner.id).status == "pending"
    kept = db.scalars(sa.select(PaymentNotification).where(PaymentNotification.provider_payment_id == other)).one()
    assert kept.outcome == "unknown_payment"


def test_events_the_portal_has_no_use_for_are_acknowledged_and_kept(app, db):
    body = json.dumps({"type": "notification", "event": "deal.closed", "object": {"id": "dl-2d9f"}}).encode()
    resp = webhook(app, body)
    assert (resp.status_code, resp.get_json()["status"]) == (200, "ignored")
    assert db.scalars(sa.select(PaymentNotification.event)).all() == ["deal.closed"]


def test_a_refund_made_in_the_yookassa_dashboard_is_recorded_through_the_ledger(app, api, client, db, owner, checkout):
    from portal.payments import ledger, refunds

    order = start_order(api, checkout, db, owner)
    api.get(f"{API}/{PID}", json=payment_json(order_id=order.id, status="succeeded"))
    assert webhook(app, notification()).get_json()["outcome"] == "activated"
    # The plan is paid; the shop's staff return 100 ₽ by hand in YooKassa: money already applied to an order.
    refund = {
        "id": "2e6b1b4a-0015-5000-9000-1f2e3d4c5b6a",
        "payment_id": PID,
        "status": "succeeded",
        "amount": {"value": "100.00", "currency": "RUB"},
    }
    api.get(f"https://api.yookassa.ru/v3/refunds/{refund['id']}", json=refund)
    body = json.dumps({"type": "notification", "event": "refund.succeeded", "object": refund}).encode()
    resp = webhook(app, body)
    assert (resp.status_code, resp.get_json()["outcome"]) == (200, "refund_flagged")
    (flagged,) = ledger.list_attention(db, owner.id)
    assert "сверх остатка" in flagged.attention
    # Delivered again: flagged once more at most, never a second refund row.
    webhook(app, body)
    assert refunds.list_refunds(db, owner.id) == []


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b'{"type": "notification", "event": "payment.succeeded", "object": {"id": "../x"}}', 400)],
)
def test_garbage_from_a_trusted_address_is_400(app, body, status):
    resp = webhook(app, body)
    assert resp.status_code == status
    assert "error" in resp.get_json()


def test_oversized_body_is_413(app):
    resp = webhook(app, b'{"type": "notification", "pad": "' + b"x" * 70_000 + b'"}')
    assert resp.status_code == 413
    assert resp.get_json() == {"error": "Уведомление слишком большое."}


def test_timeout_reading_the_payment_leaves_the_order_pending_and_tick_settles_it(app, api, db, owner, checkout):
    order = start_order(api, checkout, db, owner)
    api.get(f"{API}/{PID}", body=requests.ReadTimeout("read timed out"))
    resp = webhook(app, notification())
    assert resp.status_code == 503  # YooKassa repeats the notification later
    assert only_order(db, owner.id).status == "pending"
    assert db.scalars(sa.select(PaymentNotification.outcome)).all() == ["provider_unavailable"]

    api.replace(responses.GET, f"{API}/{PID}", json=payment_json(order.id, "succeeded"))
    later = (utcnow() + timedelta(minutes=5)).isoformat()
    result = app.test_cli_runner().invoke(args=["billing", "tick", "--now", later])
    assert result.exit_code == 0, result.output
    assert f"по заказу № {order.id}: оплата подтверждена" in result.output
    assert only_order(db, owner.id).status == "paid"
    # The provider's repeated notification and a second tick find nothing more to do.
    assert webhook(app, notification()).get_json()["outcome"] == "already_settled"
    result = app.test_cli_runner().invoke(args=["billing", "tick", "--now", later])
    assert "оплата подтверждена" not in result.output
    assert audit_actions(db, owner.id).count("billing.order_paid") == 1


def test_timeout_creating_the_payment_keeps_the_order_and_a_retry_uses_the_same_key(
    app, api, client, db, owner, checkout
):
    api.post(API, body=requests.ConnectTimeout("connect timed out"))
    resp = checkout("users-12", 9)
    order = only_order(db, owner.id)
    assert resp.headers["Location"] == f"/payments/return/{order.id}"
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Платёжная система не ответила" in page and "деньги не списаны" in page
    [attempt] = payments_of(db, owner.id)
    assert (attempt.status, attempt.provider_payment_id) == ("pending", None)
    assert order.status == "pending"
    assert "Платежей картой пока не было" in client.get("/payments").get_data(as_text=True)

    api.replace(responses.POST, API, json=payment_json(order.id))
    resp = post(client, f"/payments/pay/{order.id}")
    assert resp.headers["Location"].startswith("https://yoomoney.ru/checkout/")
    first, second = api.calls
    assert (
        first.request.headers["Idempotence-Key"] == second.request.headers["Idempotence-Key"] == order.idempotency_key
    )
    [attempt] = payments_of(db, owner.id)
    assert attempt.provider_payment_id == PID


def test_timeout_creating_the_payment_is_settled_by_tick_with_the_same_key(app, api, db, owner, checkout):
    api.post(API, body=requests.ReadTimeout("read timed out"))
    checkout("users-12", 9)
    order = only_order(db, owner.id)
    # The create request did reach YooKassa; repeating it with the same key returns that payment, which nobody
    # could confirm (its link never reached the payer) and which YooKassa has since canceled.
    api.replace(responses.POST, API, json=payment_json(order.id))
    api.get(
        f"{API}/{PID}",
        json=payment_json(
            order.id, "canceled", cancellation_details={"party": "yoo_money", "reason": "expired_on_confirmation"}
        ),
    )
    later = (utcnow() + timedelta(minutes=5)).isoformat()
    result = app.test_cli_runner().invoke(args=["billing", "tick", "--now", later])
    assert result.exit_code == 0, result.output
    assert "не прошёл — Время на оплату истекло" in result.output
    posts = [c for c in api.calls if c.request.method == "POST"]
    assert [c.request.headers["Idempotence-Key"] for c in posts] == [order.idempotency_key] * 2
    [payment] = payments_of(db, owner.id)
    assert (payment.provider_payment_id, payment.status, payment.status_reason) == (
        PID,
        "canceled",
        "expired_on_confirmation",
    )
    assert only_order(db, owner.id).status == "pending"


def test_provider_refusing_the_request_is_reported_and_the_attempt_closed(app, api, client, db, owner, checkout):
    api.post(API, status=400, json={"type": "error", "code": "invalid_request", "description": "Invalid receipt"})
    resp = checkout("users-12", 9)
    assert resp.headers["Location"].startswith("/checkout?plan=users-12&months=9")
    assert "Не удалось начать оплату" in client.get(resp.headers["Location"]).get_data(as_text=True)
    [attempt] = payments_of(db, owner.id)
    assert (attempt.status, attempt.status_reason) == ("canceled", "provider_rejected")


def test_a_notification_for_a_payment_whose_create_answer_was_lost_is_filed_against_its_order(
    app, api, db, owner, checkout
):
    api.post(API, body=requests.ReadTimeout("read timed out"))
    checkout("users-12", 9)
    order = only_order(db, owner.id)
    api.get(f"{API}/{PID}", json=payment_json(order.id, "succeeded"))
    assert webhook(app, notification()).get_json() == {"status": "succeeded", "outcome": "activated"}
    assert only_order(db, owner.id).status == "paid"
    # The tick closes the unanswered attempt instead of asking YooKassa again.
    later = (utcnow() + timedelta(minutes=5)).isoformat()
    assert app.test_cli_runner().invoke(args=["billing", "tick", "--now", later]).exit_code == 0
    assert [(p.provider_payment_id, p.status) for p in payments_of(db, owner.id)] == [
        (None, "canceled"),
        (PID, "succeeded"),
    ]
    assert db.scalar(sa.select(sa.func.count()).select_from(Payment).where(Payment.status == "succeeded")) == 1


def test_sandbox_pages_and_webhook_do_not_exist_with_yookassa(app, client):
    assert client.get("/sandbox/pay/sbx_0123").status_code == 404
    resp = app.test_client().post("/payments/webhook/sandbox", data=b"{}", environ_base={"REMOTE_ADDR": YOOKASSA_IP})
    assert resp.status_code == 404
