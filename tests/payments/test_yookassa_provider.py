"""YooKassa through the official SDK, with its HTTP answered locally by `responses` (no network)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pytest
import requests
import responses

from portal.payments.providers.base import (
    Customer,
    NotificationRejected,
    PaymentNotFound,
    ProviderRejected,
    ProviderUnavailable,
)
from portal.payments.providers.yookassa import YooKassaProvider

API = "https://api.yookassa.ru/v3/payments"
TRUSTED = "185.71.76.0/27,185.71.77.0/27,77.75.153.0/25,77.75.156.11/32,77.75.156.35/32,77.75.154.128/25,2a02:5180::/32"
PID = "2e5a3b1c-000f-5000-9000-1b68e7b15f3f"


@dataclass
class FakeOrder:
    id: int = 41
    account_id: int = 5
    amount: int = 846450
    months: int = 9
    plan_title: str = "12 пользователей"


def provider(**kw) -> YooKassaProvider:
    args = {"shop_id": "123456", "secret_key": "test_secret", "trusted_ips": TRUSTED}
    args.update(kw)
    return YooKassaProvider(**args)


def payment_json(status="pending", value="8464.50", currency="RUB", order_id="41", **extra) -> dict:
    obj = {
        "id": PID,
        "status": status,
        "paid": status == "succeeded",
        "amount": {"value": value, "currency": currency},
        "description": "Лицензия",
        "metadata": {"order_id": order_id, "account_id": "5"},
        "created_at": "2026-11-25T10:00:00.000Z",
        "test": False,
        "refundable": False,
        "recipient": {"account_id": "123456", "gateway_id": "1"},
    }
    if status == "pending":
        obj["confirmation"] = {
            "type": "redirect",
            "confirmation_url": "https://yoomoney.ru/checkout/payments/v2/contract?orderId=" + PID,
        }
    obj.update(extra)
    return obj


@responses.activate
def test_create_sends_receipt_capture_and_the_orders_idempotence_key():
    responses.post(API, json=payment_json())
    pid, url = provider().create_payment(
        FakeOrder(), "https://portal.example/payments/return/41", "order-key-1", Customer(email="owner@example.ru")
    )
    assert pid == PID
    assert url.startswith("https://yoomoney.ru/checkout/")

    sent = responses.calls[0].request
    assert sent.headers["Idempotence-Key"] == "order-key-1"
    assert sent.req_kwargs["timeout"] == (5.0, 20.0)  # the SDK alone would wait forever
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(b"123456:test_secret").decode()
    body = json.loads(sent.body)
    assert body["amount"] == {"value": "8464.50", "currency": "RUB"}
    assert body["capture"] is True
    assert body["confirmation"] == {"type": "redirect", "return_url": "https://portal.example/payments/return/41"}
    assert body["metadata"]["order_id"] == "41" and body["metadata"]["account_id"] == "5"  # the SDK adds cms_name
    assert "заказ № 41" in body["description"]
    assert body["receipt"]["customer"] == {"email": "owner@example.ru"}
    [item] = body["receipt"]["items"]
    assert item["amount"] == {"value": "8464.50", "currency": "RUB"}
    assert item["vat_code"] == 1  # exempt: VAT_RATE empty
    assert float(item["quantity"]) == 1
    assert (item["payment_subject"], item["payment_mode"]) == ("service", "full_prepayment")
    assert item["description"] == body["description"]


@responses.activate
def test_receipt_uses_vat_code_11_at_22_percent_and_the_phone_without_plus():
    responses.post(API, json=payment_json())
    provider(vat_rate="22").create_payment(FakeOrder(), "https://p/r", "k", Customer(phone="+79990000001"))
    body = json.loads(responses.calls[0].request.body)
    assert body["receipt"]["items"][0]["vat_code"] == 11
    assert body["receipt"]["customer"] == {"phone": "79990000001"}


def test_unknown_vat_rate_is_refused():
    with pytest.raises(ValueError, match="VAT_RATE"):
        provider(vat_rate="18")


@responses.activate
def test_get_payment_reads_status_amount_method_and_reason():
    responses.get(
        f"{API}/{PID}",
        json=payment_json(
            "canceled",
            cancellation_details={"party": "payment_network", "reason": "insufficient_funds"},
            payment_method={"type": "bank_card", "id": PID, "saved": False},
        ),
    )
    info = provider().get_payment(PID)
    assert (info.status, info.amount, info.currency, info.reason, info.method, info.paid) == (
        "canceled",
        846450,
        "RUB",
        "insufficient_funds",
        "bank_card",
        False,
    )
    assert info.metadata["order_id"] == "41"


@pytest.mark.parametrize("exc", [requests.ConnectTimeout(), requests.ReadTimeout(), requests.ConnectionError()])
@responses.activate
def test_timeouts_and_refused_connections_are_provider_unavailable(exc):
    responses.post(API, body=exc)
    responses.get(f"{API}/{PID}", body=exc)
    with pytest.raises(ProviderUnavailable):
        provider().create_payment(FakeOrder(), "https://p/r", "k", Customer(email="a@b.ru"))
    with pytest.raises(ProviderUnavailable):
        provider().get_payment(PID)


@responses.activate
def test_http_errors_map_to_not_found_unavailable_and_rejected():
    responses.get(
        f"{API}/{PID}", status=404, json={"type": "error", "code": "not_found", "description": "Payment not found"}
    )
    with pytest.raises(PaymentNotFound):
        provider().get_payment(PID)
    responses.post(API, status=500, json={"type": "error", "code": "internal_server_error"})
    with pytest.raises(ProviderUnavailable):
        provider().create_payment(FakeOrder(), "https://p/r", "k", Customer(email="a@b.ru"))
    responses.replace(
        responses.POST,
        API,
        status=400,
        json={"type": "error", "code": "invalid_request", "description": "Receipt is missing", "parameter": "receipt"},
    )
    with pytest.raises(ProviderRejected, match="Receipt is missing"):
        provider().create_payment(FakeOrder(), "https://p/r", "k", Customer(email="a@b.ru"))
    responses.replace(responses.POST, API, status=502, body="<html>Bad gateway</html>")
    with pytest.raises(ProviderUnavailable):
        provider().create_payment(FakeOrder(), "https://p/r", "k", Customer(email="a@b.ru"))


@responses.activate
def test_secret_key_never_shows_in_repr():
    assert "test_secret" not in repr(provider())


NOTE = json.dumps(
    {"type": "notification", "event": "payment.succeeded", "object": {"id": PID, "status": "succeeded"}}
).encode()


@pytest.mark.parametrize("ip", ["185.71.76.5", "77.75.156.11", "2a02:5180:0:1509::10"])
def test_notification_from_yookassa_addresses_is_accepted(ip):
    event = provider().parse_notification(NOTE, {}, ip)
    assert (event.event, event.provider_payment_id) == ("payment.succeeded", PID)


@pytest.mark.parametrize("ip", ["203.0.113.7", "185.71.76.32", "77.75.156.12", None, "garbage"])
def test_notification_from_elsewhere_is_forbidden(ip):
    with pytest.raises(NotificationRejected) as err:
        provider().parse_notification(NOTE, {}, ip)
    assert err.value.status_code == 403


def test_ip_check_can_be_switched_off_behind_a_filtering_proxy():
    assert provider(check_ip=False).parse_notification(NOTE, {}, "10.0.0.1").provider_payment_id == PID


def test_malformed_notification_from_a_trusted_address_is_400():
    with pytest.raises(NotificationRejected) as err:
        provider().parse_notification(b"{oops", {}, "185.71.76.5")
    assert err.value.status_code == 400
