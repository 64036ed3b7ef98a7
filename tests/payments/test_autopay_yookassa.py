"""Autopayment through YooKassa: the checkout asks to save the card, the renewal charges it by payment_method_id
(no confirmation, a key per order and attempt); YooKassa's HTTP answered locally, as in test_yookassa_flow."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import responses
import sqlalchemy as sa

from portal.billing.models import Order, SubscriptionPeriod
from portal.billing.tick import tick
from portal.payments.autopay_models import AutopayConsent, AutopayRenewal, SavedMethod
from portal.payments.models import Payment
from tests.payments.conftest import form_fields, only_order
from tests.payments.test_autopay import at
from tests.payments.test_yookassa_flow import API, PID, notification, payment_json, webhook


@pytest.fixture
def app_config(app_config):
    app_config.update(PAYMENT_PROVIDER="yookassa", YOOKASSA_SHOP_ID="123456", YOOKASSA_SECRET_KEY="test_secret")
    return app_config


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


METHOD = "2e5a3b1c-000f-5000-9000-1b68e7b1aaaa"
CHARGE = "2e5a3b1c-000f-5000-9000-1b68e7b1cccc"


def test_the_card_is_saved_at_checkout_and_the_renewal_charges_it_by_its_id(app, api, client, db, owner):
    api.post(API, json=payment_json(1))
    page = client.get("/checkout?plan=users-12&months=6").get_data(as_text=True)
    data = form_fields(page) | {"payer_type": "card", "accept_license": "y", "autopay": "y"}
    assert client.post("/checkout", data=data).status_code == 302
    created = json.loads(api.calls[0].request.body)
    assert created["save_payment_method"] is True
    assert created["confirmation"]["type"] == "redirect"

    order = only_order(db, owner.id)
    saved = {"type": "bank_card", "id": METHOD, "saved": True, "title": "Bank card *4444", "card": {"last4": "4444"}}
    api.get(f"{API}/{PID}", json=payment_json(order.id, "succeeded", value="5940.00", payment_method=saved))
    assert webhook(app, notification()).get_json()["outcome"] == "activated"
    db.expire_all()
    method = db.scalars(sa.select(SavedMethod)).one()
    assert (method.provider, method.method_id, method.title) == ("yookassa", METHOD, "Карта •• 4444")
    assert db.scalars(sa.select(AutopayConsent)).one().status == "active"

    end = db.scalars(sa.select(SubscriptionPeriod).where(SubscriptionPeriod.account_id == owner.id)).one().ends_on
    with app.app_context():
        tick(db, at(end - timedelta(days=5)))
    renewal = db.scalars(sa.select(AutopayRenewal)).one()
    renewal_order_id = None

    def charge_answer(request):
        nonlocal renewal_order_id
        body = json.loads(request.body)
        renewal_order_id = int(body["metadata"]["order_id"])
        obj = payment_json(renewal_order_id, "succeeded", value="5940.00", id=CHARGE, payment_method=saved)
        return 200, {}, json.dumps(obj)

    def reread_answer(request):
        obj = payment_json(renewal_order_id, "succeeded", value="5940.00", id=CHARGE, payment_method=saved)
        return 200, {}, json.dumps(obj)

    api.add_callback(responses.POST, API, callback=charge_answer, content_type="application/json")
    api.add_callback(responses.GET, f"{API}/{CHARGE}", callback=reread_answer, content_type="application/json")
    with app.app_context():
        tick(db, at(end - timedelta(days=3)))
    charge = api.calls[-2].request  # the charge, then the re-read of the payment it made
    body = json.loads(charge.body)
    assert body["payment_method_id"] == METHOD
    assert "confirmation" not in body and "save_payment_method" not in body
    assert body["capture"] is True and body["amount"] == {"value": "5940.00", "currency": "RUB"}
    assert body["receipt"]["items"][0]["amount"] == {"value": "5940.00", "currency": "RUB"}
    assert charge.headers["Idempotence-Key"] == f"autopay-{renewal_order_id}-1"
    assert api.calls[-1].request.url == f"{API}/{CHARGE}"

    db.expire_all()
    assert db.get(AutopayRenewal, renewal.id).status == "succeeded"
    assert db.get(Order, renewal_order_id).status == "paid"
    payment = db.scalars(sa.select(Payment).where(Payment.order_id == renewal_order_id)).one()
    assert (payment.provider_payment_id, payment.status, payment.paid_amount) == (CHARGE, "succeeded", 594000)


def test_an_sbp_checkout_with_autopay_asks_yookassa_to_bind_the_account(app, api, client, db, owner):
    from tests.payments.test_sbp_yookassa import sbp_json

    api.post(API, json=sbp_json(1))
    page = client.get("/checkout?plan=users-12&months=6").get_data(as_text=True)
    data = form_fields(page) | {"payer_type": "sbp", "accept_license": "y", "autopay": "y"}
    assert client.post("/checkout", data=data).status_code == 302
    created = json.loads(api.calls[0].request.body)
    assert created["payment_method_data"] == {"type": "sbp"} and created["save_payment_method"] is True
    assert db.scalars(sa.select(AutopayConsent)).one().status == "pending"  # active once the payment saves it
