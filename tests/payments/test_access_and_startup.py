"""Who sees which payment pages, and the payment settings refused at start-up."""

from __future__ import annotations

import pytest

from portal.accounts.models import Role
from portal.config import ConfigError
from portal.payments import startup
from tests.conftest import post
from tests.payments.conftest import only_order


def test_another_accounts_order_is_not_found(app, client, db, owner, checkout, make_account, auth):
    checkout("users-12", 6)
    order = only_order(db, owner.id)
    make_account(name="ООО «Чужая»", owner_phone="+79164440000")
    auth.logout()
    auth.login("+79164440000")
    assert client.get(f"/payments/return/{order.id}").status_code == 404
    assert client.get(f"/payments/status/{order.id}").status_code == 404
    assert post(client, f"/payments/pay/{order.id}").status_code == 404
    assert "Заказ №" not in client.get("/payments").get_data(as_text=True)


def test_accountant_sees_history_and_return_page_member_does_not(app, client, db, owner, checkout, add_member, auth):
    checkout("users-12", 6)
    order = only_order(db, owner.id)
    add_member(owner, "+79165550000", "Бухгалтер", Role.ACCOUNTANT)
    add_member(owner, "+79165550001", "Сотрудник", Role.MEMBER)
    auth.logout()
    auth.login("+79165550000")
    assert client.get("/payments").status_code == 200
    page = client.get(f"/payments/return/{order.id}").get_data(as_text=True)
    assert "Платёж обрабатывается" in page
    assert post(client, f"/payments/pay/{order.id}").status_code == 403  # card payments are the owner's
    auth.logout()
    auth.login("+79165550001")
    assert client.get("/payments").status_code == 403
    assert client.get(f"/payments/return/{order.id}").status_code == 403


def test_history_is_in_the_navigation_for_owner(client, owner):
    page = client.get("/payments").get_data(as_text=True)
    assert '<a href="/payments" aria-current="page">Платежи</a>' in page


def test_webhook_needs_no_csrf_token_but_only_post(app):
    assert app.test_client().get("/payments/webhook/sandbox").status_code == 405
    resp = app.test_client().post("/payments/webhook/sandbox", data=b"{}")
    assert resp.status_code == 401  # reached the signature check: CSRF did not stop it
    assert resp.get_json() == {"error": "Нет подписи уведомления."}


def test_unknown_provider_webhook_is_404(app):
    assert app.test_client().post("/payments/webhook/paypal", data=b"{}").status_code == 404


BASE = {"PAYMENT_PROVIDER": "sandbox", "VAT_RATE": "", "PORTAL_ENV": "local"}
YOOKASSA = {
    "PAYMENT_PROVIDER": "yookassa",
    "YOOKASSA_SHOP_ID": "123456",
    "YOOKASSA_SECRET_KEY": "live_abc",
    "YOOKASSA_TRUSTED_IPS": "185.71.76.0/27",
    "YOOKASSA_CHECK_IP": True,
    "PROXY_FIX_HOPS": 0,
    "BASE_URL": "https://billing.example.ru",
    "VAT_RATE": "",
    "PORTAL_ENV": "production",
}


def test_good_settings_pass():
    startup.check(BASE)
    startup.check(YOOKASSA)
    startup.check(YOOKASSA | {"VAT_RATE": "22"})
    startup.check(YOOKASSA | {"YOOKASSA_CHECK_IP": False, "PROXY_FIX_HOPS": 1})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"PAYMENT_PROVIDER": "paypal"}, "PAYMENT_PROVIDER='paypal'"),
        ({"VAT_RATE": "18"}, "VAT_RATE='18'"),
        ({"YOOKASSA_SHOP_ID": "shop"}, "YOOKASSA_SHOP_ID"),
        ({"YOOKASSA_SECRET_KEY": ""}, "YOOKASSA_SECRET_KEY is not set"),
        ({"YOOKASSA_SECRET_KEY": "test_abc"}, "is a test key"),
        ({"YOOKASSA_TRUSTED_IPS": "185.71.76.0/27,not-an-ip"}, "'not-an-ip'"),
        ({"YOOKASSA_TRUSTED_IPS": ""}, "YOOKASSA_TRUSTED_IPS is empty"),
        ({"YOOKASSA_CHECK_IP": False}, "YOOKASSA_CHECK_IP is off without a proxy"),
        ({"BASE_URL": "http://billing.example.ru"}, "BASE_URL must be https://"),
    ],
)
def test_bad_settings_are_refused_by_name(change, message):
    with pytest.raises(ConfigError, match="Payment settings") as err:
        startup.check(YOOKASSA | change)
    assert message in str(err.value)


def test_a_test_key_is_fine_outside_production():
    startup.check(
        YOOKASSA | {"PORTAL_ENV": "local", "YOOKASSA_SECRET_KEY": "test_abc", "BASE_URL": "http://127.0.0.1:5000"}
    )
