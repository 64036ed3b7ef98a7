"""СБП through YooKassa: the request body (payment_method_data sbp, a QR confirmation), the waiting page showing the
returned confirmation_data, and the webhook recording the receipt as «sbp». HTTP answered locally by `responses`."""

from __future__ import annotations

import json

import pytest
import responses
import sqlalchemy as sa

from portal.payments.models import Receipt
from portal.payments.providers.base import Customer, ProviderRejected
from tests.payments.conftest import only_order, payments_of
from tests.payments.test_sbp import bank_app_url, sbp_checkout
from tests.payments.test_yookassa_flow import API, PID, payment_json, webhook
from tests.payments.test_yookassa_flow import api as api  # noqa: F401
from tests.payments.test_yookassa_flow import app_config as app_config  # noqa: F401  (YooKassa as the provider)
from tests.payments.test_yookassa_flow import vat_rate as vat_rate  # noqa: F401
from tests.payments.test_yookassa_provider import FakeOrder, provider

QR_DATA = "https://qr.nspk.ru/AS1A0045C5FE4C6B8A5C3CC7A5D1B6E0?type=02&bank=100000000111&sum=846450&cur=RUB&crc=C08B"


def sbp_json(order_id, status="pending", **extra) -> dict:
    obj = payment_json(order_id, status, **extra)
    obj["payment_method"] = {"type": "sbp", "id": PID, "saved": False}
    if status == "pending":
        obj["confirmation"] = {"type": "qr", "confirmation_data": QR_DATA}
    return obj


@responses.activate
def test_the_sbp_request_asks_for_a_qr_with_the_same_receipt_and_key():
    responses.post("https://api.yookassa.ru/v3/payments", json=sbp_json(41))
    pid, data = provider().create_sbp_payment(
        FakeOrder(), "https://portal.example/payments/return/41", "order-key-1", Customer(email="owner@example.ru")
    )
    assert (pid, data) == (PID, QR_DATA)
    sent = responses.calls[0].request
    assert sent.headers["Idempotence-Key"] == "order-key-1"
    body = json.loads(sent.body)
    assert body["payment_method_data"] == {"type": "sbp"}
    assert body["confirmation"] == {"type": "qr", "return_url": "https://portal.example/payments/return/41"}
    assert body["amount"] == {"value": "8464.50", "currency": "RUB"} and body["capture"] is True
    assert body["receipt"]["customer"] == {"email": "owner@example.ru"}
    [item] = body["receipt"]["items"]
    assert (item["vat_code"], item["payment_subject"], item["payment_mode"]) == (1, "service", "full_prepayment")


@responses.activate
def test_a_repeated_key_of_a_finished_sbp_payment_is_refused():
    responses.post("https://api.yookassa.ru/v3/payments", json=sbp_json(41, "succeeded"))
    with pytest.raises(ProviderRejected):
        provider().create_sbp_payment(FakeOrder(), "https://p/r", "k", Customer(email="a@b.ru"))


def test_checkout_by_sbp_shows_yookassas_qr_and_the_webhook_records_sbp(app, api, client, db, owner):
    api.post(API, json=sbp_json(1))
    resp = sbp_checkout(client)
    order = only_order(db, owner.id)
    assert resp.headers["Location"] == f"/payments/sbp/{order.id}"
    body = json.loads(api.calls[0].request.body)
    assert body["payment_method_data"] == {"type": "sbp"}
    assert body["confirmation"] == {"type": "qr", "return_url": f"http://localhost/payments/return/{order.id}"}
    assert api.calls[0].request.headers["Idempotence-Key"] == order.idempotency_key

    api.get(f"{API}/{PID}", json=sbp_json(order.id, "pending"))
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert bank_app_url(page) == QR_DATA  # the QR and the phone's link carry YooKassa's confirmation_data

    api.replace(responses.GET, f"{API}/{PID}", json=sbp_json(order.id, "succeeded"))
    note = {"type": "notification", "event": "payment.succeeded", "object": {"id": PID, "status": "succeeded"}}
    resp = webhook(app, json.dumps(note).encode())
    assert resp.get_json() == {"status": "succeeded", "outcome": "activated"}
    assert only_order(db, owner.id).status == "paid"
    [payment] = payments_of(db, owner.id)
    assert (payment.method, payment.confirmation_url) == ("sbp", QR_DATA)
    receipt = db.scalars(sa.select(Receipt).where(Receipt.account_id == owner.id)).one()
    assert (receipt.method, receipt.amount, receipt.source_key) == ("sbp", 846_450, f"card:yookassa:{PID}")
    # A second delivery changes nothing.
    assert webhook(app, json.dumps(note).encode()).get_json()["outcome"] == "already_settled"
    assert db.scalar(sa.select(sa.func.count()).select_from(Receipt)) == 1
