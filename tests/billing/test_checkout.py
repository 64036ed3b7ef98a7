"""Checkout: the summary from the server's figures, the payer types that are registered, license acceptance,
one order per idempotency key, and tampered forms refused with a clear message."""

from __future__ import annotations

import re
from datetime import date

import pytest
import sqlalchemy as sa

from portal.accounts.models import Role
from portal.billing import checkout
from portal.billing.checkout import CheckoutOption
from portal.billing.models import Order
from portal.billing.trial import start_trial
from tests.billing.conftest import page_text
from tests.billing.terms import msk, period_discount, period_total, upgrade_total
from tests.conftest import post

CARD = "Физическое лицо: карта или электронные деньги"
INVOICE = "Юридическое лицо или ИП: счёт на оплату"
OWNER = "+79162220000"
ACCOUNTANT = "+79162229999"

calls: list[tuple[int, str]] = []


def card_handler(db, order, actor):
    calls.append((order.id, order.payer_type))
    return f"/pay-here/{order.id}"


def invoice_handler(db, order, actor):
    calls.append((order.id, order.payer_type))
    return f"/invoice-here/{order.id}"


@pytest.fixture
def handlers():
    calls.clear()
    checkout.set_checkout_options([CheckoutOption("card", CARD, card_handler)])
    checkout.set_checkout_options([CheckoutOption("invoice", INVOICE, invoice_handler)])
    return calls


@pytest.fixture
def owner(make_account, auth, freeze):
    freeze(msk(2026, 3, 10, 15))
    account = make_account(owner_phone=OWNER, accountant_phone=ACCOUNTANT)
    auth.login(OWNER)
    return account


def rub(kopecks: int) -> str:
    roubles, kop = divmod(kopecks, 100)
    return f"{roubles:,}".replace(",", " ") + f",{kop:02d} ₽"


def form_fields(html: str) -> dict[str, str]:
    fields = {}
    for m in re.finditer(r'<input[^>]*type="hidden"[^>]*>', html):
        tag = m.group(0)
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name.group(1)] = value.group(1) if value else ""
    return fields


def open_checkout(client, plan="users-12", months=12):
    resp = client.get(f"/checkout?plan={plan}&months={months}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp, form_fields(resp.get_data(as_text=True))


def orders(db) -> list[Order]:
    db.expire_all()
    return list(db.scalars(sa.select(Order).order_by(Order.id)))


# --- who may open it --------------------------------------------------------------------------------------


def test_visitors_are_sent_to_sign_in_and_members_refused(client, auth, make_account, add_member):
    resp = client.get("/checkout?plan=users-12&months=12")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    account = make_account(owner_phone=OWNER)
    add_member(account, "+79162221111", role=Role.MEMBER)
    auth.login("+79162221111")
    assert client.get("/checkout?plan=users-12&months=12").status_code == 403


# --- the summary ------------------------------------------------------------------------------------------


def test_summary_shows_plan_period_dates_price_discount_and_total(client, owner, handlers):
    resp, fields = open_checkout(client, "users-24", 9)
    text = page_text(resp)
    assert "Покупка тарифа" in text and "24 пользователя" in text
    assert "Период 9 месяцев" in text
    assert "Даты с 10.03.2026 по 09.12.2026" in text
    assert f"Цена {rub(199_000)} × 9 = {rub(199_000 * 9)}" in text
    assert f"Скидка 5 % −{rub(period_discount('users-24', 9))}" in text
    assert f"Итого к оплате {rub(period_total('users-24', 9))}" in text
    # The button says what will happen: with two ways to pay it names the chosen one (checkout.js).
    assert f"Продолжить · {rub(period_total('users-24', 9))}" in text
    html = resp.get_data(as_text=True).replace("&nbsp;", " ").replace("\xa0", " ")
    assert f'data-label-invoice="Получить счёт · {rub(period_total("users-24", 9))}"' in html
    assert "за 9 месяцев, с 10.03.2026 по 09.12.2026" in text  # what the total covers
    assert "Без налога (НДС)" in text
    # The form carries the choice only: plan, months, a fresh key, and the figure it showed.
    assert fields["plan"] == "users-24" and fields["months"] == "9"
    assert re.fullmatch(r"[A-Za-z0-9_-]{24,}", fields["idempotency_key"])
    assert fields["shown_amount"] == str(period_total("users-24", 9))
    assert "amount" not in fields
    # Each visit gets its own key.
    assert open_checkout(client, "users-24", 9)[1]["idempotency_key"] != fields["idempotency_key"]


def test_license_checkbox_links_to_the_versioned_text(client, owner, handlers):
    resp, _ = open_checkout(client)
    html = resp.get_data(as_text=True)
    assert "Я принимаю условия лицензионного договора (оферты) ред. 2026-01" in page_text(resp)
    assert re.search(r'<input[^>]*type="checkbox"[^>]*name="accept_license"', html) or re.search(
        r'<input[^>]*name="accept_license"[^>]*type="checkbox"', html
    )
    assert 'href="/license"' in html


def test_only_registered_payer_types_are_offered(client, owner):
    resp, _ = open_checkout(client)
    text = page_text(resp)
    assert "Оплата пока недоступна" in text
    assert "Перейти к оплате" not in text
    checkout.set_checkout_options([CheckoutOption("card", CARD, card_handler)])
    text = page_text(open_checkout(client)[0])
    assert CARD in text and INVOICE not in text
    checkout.set_checkout_options([CheckoutOption("invoice", INVOICE, invoice_handler)])
    text = page_text(open_checkout(client)[0])
    assert CARD in text and INVOICE in text


def test_an_accountant_pays_by_invoice_only(client, auth, owner, handlers):
    auth.logout()
    auth.login(ACCOUNTANT)
    resp, fields = open_checkout(client)
    text = page_text(resp)
    assert INVOICE in text and CARD not in text
    assert "Получить счёт · " in text and "Перейти к оплате" not in text  # the button says what it does
    resp = post(client, "/checkout?plan=users-12&months=12", {**fields, "payer_type": "card", "accept_license": "y"})
    assert resp.status_code == 400 and "Выберите, кто платит" in page_text(resp)
    resp = post(client, "/checkout?plan=users-12&months=12", {**fields, "payer_type": "invoice", "accept_license": "y"})
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/invoice-here/")


def test_an_upgrade_shows_the_proration(client, owner, db, buy, handlers):
    buy(owner, "users-12", 12, msk(2026, 1, 10))  # 10.01.2026 – 09.01.2027
    resp, fields = open_checkout(client, "users-50", 6)
    text = page_text(resp)
    days_left = (date(2027, 1, 10) - date(2026, 3, 10)).days
    days_total = (date(2027, 1, 10) - date(2026, 1, 10)).days
    expected = upgrade_total("users-12", "users-50", 12, days_left, days_total)
    assert "Переход на больший тариф" in text
    assert "Даты с 10.03.2026 по 09.01.2027" in text
    assert f"Новый тариф за 12 месяцев {rub(period_total('users-50', 12))}" in text
    assert f"Текущий тариф за 12 месяцев −{rub(period_total('users-12', 12))}" in text
    assert f"Осталось дней {days_left} из {days_total}" in text
    assert f"Итого к оплате {rub(expected)}" in text
    assert fields["shown_amount"] == str(expected)


def test_during_a_trial_the_summary_says_it_ends(client, owner, db, handlers):
    start_trial(db, actor=None, account_id=owner.id, plan_code="users-24", now=msk(2026, 3, 1))
    db.commit()
    text = page_text(open_checkout(client, "users-24", 6)[0])
    assert "Оплата после пробного периода" in text and "Даты с 10.03.2026 по 09.09.2026" in text


# --- placing the order ------------------------------------------------------------------------------------


def test_pay_creates_one_order_and_redirects_to_the_handler(client, owner, db, handlers):
    _, fields = open_checkout(client, "users-12", 9)
    data = {**fields, "payer_type": "card", "accept_license": "y"}
    resp = post(client, "/checkout?plan=users-12&months=9", data)
    assert resp.status_code == 302
    [order] = orders(db)
    assert resp.headers["Location"] == f"/pay-here/{order.id}"
    assert (order.plan_code, order.months, order.amount, order.payer_type) == (
        "users-12",
        9,
        period_total("users-12", 9),
        "card",
    )
    assert order.license_version == "2026-01" and order.license_accepted_at == msk(2026, 3, 10, 15)
    assert order.status == "pending"
    # Pressing "pay" again (same key) does not make a second order.
    again = post(client, "/checkout?plan=users-12&months=9", data)
    assert again.status_code == 302 and again.headers["Location"] == f"/pay-here/{order.id}"
    assert len(orders(db)) == 1
    assert handlers == [(order.id, "card"), (order.id, "card")]


def test_without_the_license_nothing_is_ordered(client, owner, db, handlers):
    _, fields = open_checkout(client)
    resp = post(client, "/checkout?plan=users-12&months=12", {**fields, "payer_type": "card"})
    assert resp.status_code == 400
    assert "Чтобы оплатить, примите условия лицензионного договора." in page_text(resp)
    assert orders(db) == [] and handlers == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"plan": "users-13"}, "Тариф «users-13» не найден"),
        ({"plan": "users-5"}, "Бесплатный тариф не нужно оплачивать"),
        ({"plan": "custom-999-2000"}, "Тариф «custom-999-2000» не найден"),
        ({"months": "7"}, "Период «7» не предлагается. Можно оплатить 6, 9, 12 или 24 месяца."),
        ({"months": "abc"}, "Период «abc» не предлагается"),
        ({"months": ""}, "Период оплаты не указан"),
        ({"payer_type": "crypto"}, "Выберите, кто платит."),
        ({"idempotency_key": "x"}, "Форма оплаты повреждена"),
    ],
)
def test_a_tampered_form_is_refused_clearly_and_orders_nothing(client, owner, db, handlers, change, message):
    _, fields = open_checkout(client)
    resp = post(
        client, "/checkout?plan=users-12&months=12", {**fields, "payer_type": "card", "accept_license": "y", **change}
    )
    assert resp.status_code == 400
    assert message in page_text(resp)
    assert orders(db) == [] and handlers == []


def test_a_tampered_amount_is_refused_and_the_real_one_shown(client, owner, db, handlers):
    _, fields = open_checkout(client)
    data = {**fields, "payer_type": "card", "accept_license": "y", "shown_amount": "100", "amount": "100"}
    resp = post(client, "/checkout?plan=users-12&months=12", data)
    assert resp.status_code == 400
    text = page_text(resp)
    assert f"к оплате {rub(period_total('users-12', 12))}" in text
    assert orders(db) == []
    # The page now carries the server's figure; confirming it places the order at that figure.
    fixed = form_fields(resp.get_data(as_text=True))
    assert fixed["shown_amount"] == str(period_total("users-12", 12))
    resp = post(
        client,
        "/checkout?plan=users-12&months=12",
        {**fixed, "payer_type": "card", "accept_license": "y", "amount": "1"},
    )
    assert resp.status_code == 302
    assert [o.amount for o in orders(db)] == [period_total("users-12", 12)]


def test_a_failing_handler_keeps_the_order_for_a_retry(client, owner, db):
    def broken(db, order, actor):
        raise RuntimeError("провайдер не ответил")

    broken.__module__ = __name__
    checkout.set_checkout_options([CheckoutOption("card", CARD, broken)])
    _, fields = open_checkout(client)
    resp = post(client, "/checkout?plan=users-12&months=12", {**fields, "payer_type": "card", "accept_license": "y"})
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/checkout?plan=users-12")
    follow = client.get(resp.headers["Location"])
    assert "Не удалось начать оплату" in page_text(follow)
    assert [o.status for o in orders(db)] == ["pending"]


def test_get_with_a_bad_plan_or_period_is_400(client, owner, handlers):
    resp = client.get("/checkout?plan=users-13&months=12")
    assert resp.status_code == 400 and "Тариф «users-13» не найден" in page_text(resp)
    resp = client.get("/checkout?plan=users-12&months=3")
    assert resp.status_code == 400 and "Период «3» не предлагается" in page_text(resp)


def test_a_pending_order_can_be_cancelled_from_the_dashboard(client, owner, db, handlers, order_for, make_account):
    order = order_for(owner, "users-24", 6, msk(2026, 3, 10, 15), payer_type="invoice")
    text = page_text(client.get("/"))
    assert f"№ {order.id}" in text and "Ожидают оплаты" in text
    resp = post(client, f"/orders/{order.id}/cancel")
    assert resp.status_code == 302
    assert [o.status for o in orders(db)] == ["canceled"]
    other = make_account(owner_phone="+79162223333")
    foreign = order_for(other, "users-24", 6, msk(2026, 3, 10, 15))
    assert post(client, f"/orders/{foreign.id}/cancel").status_code == 404
