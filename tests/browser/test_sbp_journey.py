"""Issue #20 in Chromium: the owner picks a plan, chooses СБП, the waiting page shows a QR code; the code, decoded
from the screenshot, is opened as a phone would, «Оплатить» in the sandbox's bank app; back on the waiting page the
plan is active and /payments says «СБП». Screenshots at 1280 and 390 px; axe-core on each new page."""

from __future__ import annotations

import re
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from devtools.demo import DEMO_OWNER
from tests.browser.conftest import SCREENSHOTS, shot, sign_in
from tests.browser.test_plan_changes import axe_clean, close_dialog
from tests.browser.test_ux_journeys import DESKTOP, PHONE, text, typed

pytestmark = pytest.mark.browser


@pytest.fixture
def owner_page(browser: Any, live_server: Any):
    """A desktop-wide page of its own; axe is injected past the portal's CSP."""
    context = browser.new_context(locale="ru-RU", viewport=DESKTOP, base_url=live_server.base_url, bypass_csp=True)
    context.set_default_timeout(15000)
    yield context.new_page()
    context.close()


def decode_qr(page: Any, selector: str) -> str:
    """Read the QR code as a camera would: from the rendered pixels, not from the page's markup."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "sbp-qr-element.png"
    page.locator(selector).screenshot(path=str(path))
    [barcode] = zxingcpp.read_barcodes(Image.open(path))
    return barcode.text


def test_the_owner_pays_a_plan_by_sbp_scanning_the_qr_with_a_phone(owner_page, browser, live_server, sms_output):
    page = owner_page
    sign_in(page, sms_output, typed(DEMO_OWNER), DEMO_OWNER)
    page.wait_for_url(re.compile(r".*/$"))
    close_dialog(page)
    page.goto("/plans?months=12")
    page.locator("#plan-users-200").get_by_role("link").first.click()
    page.wait_for_url(re.compile(r".*/checkout\?.*plan=users-200.*"))
    page.get_by_label("СБП — по QR-коду в приложении банка").check()
    page.get_by_label(re.compile("Я принимаю условия")).check()
    button = page.get_by_role("button", name=re.compile("^Показать QR-код СБП"))
    shot(page, "50-sbp-checkout-1280")
    axe_clean(page)
    page.set_viewport_size(PHONE)
    shot(page, "50-sbp-checkout-390")
    axe_clean(page)
    page.set_viewport_size(DESKTOP)
    button.click()

    # The waiting page: the QR code, the phone's link, the check button.
    page.wait_for_url(re.compile(r".*/payments/sbp/\d+$"))
    waiting_url = page.url
    assert "Оплата по СБП" in text(page.locator("main"))
    page.get_by_role("button", name="Проверить оплату").wait_for()
    scanned = decode_qr(page, "#sbp-qr")
    assert scanned == page.locator("#sbp-link").get_attribute("href")
    assert re.match(rf"^{re.escape(live_server.base_url)}/sandbox/sbp/sbx_[0-9a-f]+$", scanned), scanned
    shot(page, "51-sbp-waiting-1280")
    axe_clean(page)
    page.set_viewport_size(PHONE)
    shot(page, "51-sbp-waiting-390")
    axe_clean(page)
    page.set_viewport_size(DESKTOP)

    # The phone opens what it scanned: the bank app's confirmation, at a phone's width.
    phone = browser.new_context(locale="ru-RU", viewport=PHONE, bypass_csp=True)
    phone.set_default_timeout(15000)
    app_page = phone.new_page()
    app_page.goto(scanned)
    assert "Оплата по QR-коду СБП" in text(app_page.locator("main"))
    shot(app_page, "52-sbp-bank-app-390")
    axe_clean(app_page)
    app_page.get_by_role("button", name="Оплатить", exact=True).click()
    app_page.get_by_text("Оплачено").wait_for()
    shot(app_page, "53-sbp-bank-app-paid-390")
    axe_clean(app_page)
    phone.close()

    # Back at the computer: the waiting page learns it (its script polls, at most 10 s apart) and reloads into the
    # result. Nothing navigates it meanwhile: a goto raced the script's own reload (net::ERR_ABORTED under load).
    page.get_by_role("heading", name="Оплата прошла").wait_for(timeout=30000)
    assert page.url.endswith(waiting_url.rsplit("/", 1)[1]) and "/payments/return/" in page.url  # the same payment
    result = text(page.locator(".payment-result"))
    assert "200 пользователей" in result and "СБП" in result
    shot(page, "54-sbp-paid-1280")
    axe_clean(page)
    page.set_viewport_size(PHONE)
    shot(page, "54-sbp-paid-390")
    page.set_viewport_size(DESKTOP)
    page.goto("/")
    assert "200 пользователей" in text(page.locator("main"))
    page.goto("/payments")
    assert page.locator("td", has_text=re.compile("^СБП$")).count() >= 1
    shot(page, "55-sbp-payments-1280")
    axe_clean(page)
    page.set_viewport_size(PHONE)
    shot(page, "55-sbp-payments-390")


def test_the_owner_takes_reminders_by_sms_on_the_notifications_page(owner_page, sms_output):
    page = owner_page
    sign_in(page, sms_output, typed(DEMO_OWNER), DEMO_OWNER)
    page.wait_for_url(re.compile(r".*/$"))
    close_dialog(page)
    page.goto("/notifications")
    reminders = page.get_by_role("group", name=re.compile(r"Как присылать\s*: Напоминания"))
    reminders.get_by_label("SMS на телефон входа").check()
    shot(page, "56-notifications-sms-1280")
    axe_clean(page)
    page.get_by_role("button", name="Сохранить").click()
    page.get_by_text("Настройки уведомлений сохранены.").wait_for()
    assert (
        page.get_by_role("group", name=re.compile(r"Как присылать\s*: Напоминания"))
        .get_by_label("SMS на телефон входа")
        .is_checked()
    )
    assert page.get_by_role("group", name=re.compile(r"Как присылать\s*: Платёж")).get_by_label("Письмом").is_checked()
    page.set_viewport_size(PHONE)
    shot(page, "56-notifications-sms-390")
    axe_clean(page)
