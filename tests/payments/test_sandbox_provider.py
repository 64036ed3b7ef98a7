"""The sandbox acquirer on its own: card checks, idempotent creation, settling once, signed notifications."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from portal.payments.providers import get_provider
from portal.payments.providers.base import Customer, NotificationRejected, PaymentNotFound
from portal.payments.providers.sandbox import SIGNATURE_HEADER, CardError, check_card, luhn_ok, sign


@dataclass
class FakeOrder:
    id: int = 7
    account_id: int = 3
    amount: int = 846450
    months: int = 9
    plan_title: str = "12 пользователей"


@pytest.fixture
def sandbox(app):
    provider = get_provider(app, "sandbox")
    provider.sent = []
    provider.deliver = lambda url, body, headers: provider.sent.append((url, body, headers)) or 200
    return provider


def test_luhn_accepts_test_cards_and_refuses_a_typo():
    assert luhn_ok("4111111111111111")
    assert luhn_ok("4000000000000002")
    assert not luhn_ok("4111111111111112")
    assert not luhn_ok("4111")


@pytest.mark.parametrize(
    ("number", "expiry", "cvc", "field", "text"),
    [
        ("", "12/30", "123", "number", "Введите номер карты"),
        ("4111 1111 1111 1112", "12/30", "123", "number", "Неверный номер карты"),
        ("4111 1111 1111 1111", "1230", "123", "expiry", "ММ/ГГ"),
        ("4111 1111 1111 1111", "13/30", "123", "expiry", "от 01 до 12"),
        ("4111 1111 1111 1111", "10/26", "123", "expiry", "истёк"),
        ("4111 1111 1111 1111", "12/30", "12", "cvc", "три цифры"),
        ("4111 1111 1111 1111", "12/30", "12a", "cvc", "три цифры"),
    ],
)
def test_card_form_errors_name_the_field(number, expiry, cvc, field, text):
    with pytest.raises(CardError) as err:
        check_card(number, expiry, cvc, today=date(2026, 11, 25))
    assert err.value.field == field
    assert text in err.value.message


def test_card_expiring_this_month_is_still_good():
    card = check_card("4111-1111-1111-1111", "11/26", "123", today=date(2026, 11, 25))
    assert (card.number, card.expiry_month, card.expiry_year, card.last4) == ("4111111111111111", 11, 2026, "1111")


def test_same_idempotence_key_gives_the_same_payment(sandbox):
    first = sandbox.create_payment(FakeOrder(), "http://localhost/r/7", "key-1", Customer(email="a@b.ru"))
    again = sandbox.create_payment(FakeOrder(), "http://localhost/r/7", "key-1", Customer(email="a@b.ru"))
    other = sandbox.create_payment(FakeOrder(), "http://localhost/r/7", "key-2", Customer(phone="+79990000001"))
    assert first == again
    assert other[0] != first[0]
    assert first[1] == f"http://localhost/sandbox/pay/{first[0]}"
    info = sandbox.get_payment(first[0])
    assert (info.status, info.amount, info.currency, info.paid) == ("pending", 846450, "RUB", False)
    assert info.metadata == {"order_id": "7", "account_id": "3"}


def test_paying_settles_once_and_notifies_with_a_valid_signature(sandbox):
    pid, _ = sandbox.create_payment(FakeOrder(), "http://localhost/r/7", "k", Customer(email="a@b.ru"))
    card = check_card("4111 1111 1111 1111", "12/30", "123", today=date(2026, 1, 1))
    row, changed = sandbox.complete(pid, method="bank_card", card=card)
    assert changed and row.status == "succeeded"
    row, changed = sandbox.complete(pid, method="yoo_money")
    assert not changed and row.method == "bank_card"

    assert sandbox.notify(pid) == 200
    url, body, headers = sandbox.sent[0]
    assert url == "http://localhost/payments/webhook/sandbox"
    assert headers[SIGNATURE_HEADER] == sign("test-webhook-secret", body)
    data = json.loads(body)
    assert data["type"] == "notification" and data["event"] == "payment.succeeded"
    assert data["object"]["amount"] == {"value": "8464.50", "currency": "RUB"}
    assert data["object"]["payment_method"]["card"] == {"last4": "1111"}
    assert "4111111111111111" not in body.decode()

    event = sandbox.parse_notification(body, headers, "127.0.0.1")
    assert (event.event, event.provider_payment_id) == ("payment.succeeded", pid)
    info = sandbox.get_payment(pid)
    assert info.status == "succeeded" and info.method == "bank_card"
    assert info.receipt_url == f"http://localhost/sandbox/receipt/{pid}"


def test_declining_card_cancels_with_the_reason(sandbox):
    pid, _ = sandbox.create_payment(FakeOrder(), "http://localhost/r/7", "k", Customer(email="a@b.ru"))
    card = check_card("4000 0000 0000 0002", "12/30", "123", today=date(2026, 1, 1))
    sandbox.complete(pid, method="bank_card", card=card)
    info = sandbox.get_payment(pid)
    assert (info.status, info.reason, info.paid) == ("canceled", "insufficient_funds", False)
    sandbox.notify(pid)
    assert json.loads(sandbox.sent[0][1])["event"] == "payment.canceled"


def test_unconfirmed_payment_expires_after_an_hour(sandbox):
    pid, _ = sandbox.create_payment(FakeOrder(), "http://localhost/r/7", "k", Customer(email="a@b.ru"))
    real_clock = sandbox.clock
    sandbox.clock = lambda: real_clock() + timedelta(hours=1, seconds=1)
    info = sandbox.get_payment(pid)
    assert (info.status, info.reason) == ("canceled", "expired_on_confirmation")


def test_unknown_payment_is_not_found(sandbox):
    with pytest.raises(PaymentNotFound):
        sandbox.get_payment("sbx_nope")
    with pytest.raises(PaymentNotFound):
        sandbox.get_payment("../../etc")


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b'{"type":"notification"}', {}, 401),
        (b'{"type":"notification"}', {SIGNATURE_HEADER: "sha256=00"}, 401),
        (b"not json", "sign", 400),
        (b'{"type":"notification","event":"payment.succeeded","object":{}}', "sign", 400),
        (b'{"type":"notification","event":"refund.succeeded","object":{"id":"x"}}', "sign", 400),
        (b"[1, 2]", "sign", 400),
    ],
)
def test_bad_notifications_are_rejected(sandbox, body, headers, status):
    if headers == "sign":
        headers = {SIGNATURE_HEADER: sign("test-webhook-secret", body)}
    with pytest.raises(NotificationRejected) as err:
        sandbox.parse_notification(body, headers, "127.0.0.1")
    assert err.value.status_code == status


def test_description_of_an_upgrade_names_the_new_plan_and_the_end_date():
    from datetime import date as _date

    from portal.payments.providers.base import payment_description

    @dataclass
    class Upgrade(FakeOrder):
        kind: str = "upgrade"
        last_day: _date = _date(2027, 8, 24)
        plan_title: str = "50 пользователей"

    assert payment_description(Upgrade()) == (
        "Лицензия на мессенджер: переход на тариф «50 пользователей» до 24.08.2027, заказ № 7"
    )
    assert payment_description(FakeOrder()) == "Лицензия на мессенджер, тариф «12 пользователей», 9 мес., заказ № 7"
