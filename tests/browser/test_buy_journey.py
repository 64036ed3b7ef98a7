"""A new company's owner registers by phone, picks «24 пользователя» for 12 months, pays by card in the sandbox and
sees the plan and the paid-until date."""

from __future__ import annotations

import re
from datetime import date

import pytest

from portal.billing.pricing import add_months
from portal.db import utcnow
from portal.timeutil import format_date_ru, msk_date
from tests.browser.conftest import shot

pytestmark = pytest.mark.browser

NEW_OWNER = "+79161234567"


def text(locator) -> str:
    """What a person reads: spaces of any kind collapsed."""
    return " ".join(locator.inner_text().replace("\xa0", " ").split())


def test_a_new_owner_registers_buys_24_users_for_a_year_and_pays_by_card(page, sms_output):
    # Registration: the phone as a person types it, the code from the SMS backend's output.
    page.goto("/login")
    page.get_by_label("Номер телефона").fill("8 916 123-45-67")
    page.get_by_role("button", name="Получить код").click()
    page.get_by_label("Код из SMS").fill(sms_output.last_code(NEW_OWNER))
    page.get_by_role("button", name="Войти").click()
    page.wait_for_url("**/register")
    shot(page, "10-register")
    page.get_by_label("Ваше имя").fill("Ирина Новикова")
    page.get_by_label("Название компании").fill("ООО «Новая Волна»")
    page.get_by_role("button", name=re.compile("Создать|Зарегистр")).click()
    page.wait_for_url(re.compile(r".*/$"))
    assert "ООО «Новая Волна»" in page.content()
    shot(page, "11-dashboard-new-owner")

    # The plans page: 12 months, then the «24 пользователя» card.
    page.goto("/plans")
    page.get_by_role("navigation", name="Период оплаты").get_by_role("link", name=re.compile("^12 месяцев")).click()
    page.wait_for_url("**/plans?months=12*")
    card = page.locator("#plan-users-24")
    assert card.get_by_role("heading").inner_text().split() == ["24", "пользователя"]
    shot(page, "12-plans-12-months")
    card.get_by_role("link").click()

    # Checkout: the plan and period preselected, the card payer, the license accepted.
    page.wait_for_url(re.compile(r".*/checkout\?.*plan=users-24.*"))
    summary = text(page.locator(".checkout-summary"))
    assert "24 пользователя" in summary and "12 месяцев" in summary
    assert "22 208,40 ₽" in text(page.locator("main"))  # 1 990 ₽ × 12 − 7 %
    page.get_by_label(re.compile("Картой или электронными деньгами")).check()
    page.get_by_label(re.compile("Я принимаю условия")).check()
    shot(page, "13-checkout")
    page.get_by_role("button", name=re.compile("Перейти к оплате")).click()

    # The sandbox acquirer's page, in the style of a real one.
    page.wait_for_url(re.compile(r".*/sandbox/pay/sbx_.*"))
    page.get_by_label("Номер карты").fill("4111 1111 1111 1111")
    page.get_by_label(re.compile("Срок")).fill("12/30")
    page.get_by_label(re.compile("CVC|CVV")).fill("123")
    shot(page, "14-sandbox-pay")
    page.get_by_role("button", name=re.compile("^Оплатить \\d")).click()

    # Back at the portal: paid, with the plan and the paid-until date.
    page.wait_for_url(re.compile(r".*/payments/return/\d+"))
    page.get_by_role("heading", name="Оплата прошла").wait_for()
    today = msk_date(utcnow())
    paid_until = add_months(today, 12).toordinal() - 1
    until_text = format_date_ru(date.fromordinal(paid_until))
    result = text(page.locator(".payment-result"))
    assert "24 пользователя" in result and until_text in result
    shot(page, "15-payment-return-paid")
    page.goto("/")
    dashboard = text(page.locator("main"))
    assert "24 пользователя" in dashboard
    shot(page, "16-dashboard-paid")
    page.goto("/payments")
    assert "22 208,40 ₽" in text(page.locator("main"))
    shot(page, "17-payment-history")
