"""Issue #15 in Chromium: a company pays by card and gets its УПД; the owner cancels a prepaid next period and its
money is on the balance. Screenshots at 1280 and 390 px; axe-core (WCAG 2.2 AA) on the new pages."""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import pytest
import sqlalchemy as sa

from devtools.demo import DEMO_OWNER
from portal.accounts.models import Account
from portal.billing.orders import create_order
from portal.db import utcnow
from portal.payments import ledger
from portal.timeutil import msk_date
from tests.browser.conftest import shot, sign_in
from tests.browser.test_ux_journeys import AXE, DESKTOP, PHONE, axe_violations, text, typed

pytestmark = pytest.mark.browser


@pytest.fixture
def owner_page(browser: Any, live_server: Any):
    """A desktop-wide page of its own; axe is injected past the portal's CSP."""
    context = browser.new_context(locale="ru-RU", viewport=DESKTOP, base_url=live_server.base_url, bypass_csp=True)
    context.set_default_timeout(15000)
    yield context.new_page()
    context.close()


def axe_clean(page: Any) -> None:
    if not AXE.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"axe-core missing at {AXE}: `make test` installs it (npm ci in devtools/axe)")
        return  # a developer's run without `make test`'s npm step: the rest of the journey still runs
    assert not (found := axe_violations(page)), json.dumps(found, ensure_ascii=False, indent=1)


def close_dialog(page: Any) -> None:
    dialog = page.locator("#over-limit-dialog")
    if dialog.count() and dialog.is_visible():
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")


def test_a_company_paying_by_card_gets_a_upd_on_the_documents_page(owner_page, live_server, sms_output):
    page = owner_page
    sign_in(page, sms_output, typed(DEMO_OWNER), DEMO_OWNER)
    page.wait_for_url(re.compile(r".*/$"))
    close_dialog(page)
    page.goto("/checkout?plan=users-24&months=6")
    page.get_by_label(re.compile("Картой или электронными деньгами")).check()
    box = page.get_by_label("Оплачиваю как компания — нужен УПД")
    assert "ИНН" in text(page.locator("#as_company-hint"))
    box.check()
    page.get_by_label(re.compile("Я принимаю условия")).check()
    shot(page, "40-company-card-checkout-1280")
    axe_clean(page)
    page.get_by_role("button", name=re.compile("Перейти к оплате")).click()

    page.wait_for_url(re.compile(r".*/sandbox/pay/.*"))
    page.get_by_label("Номер карты").fill("4111 1111 1111 1111")
    page.get_by_label(re.compile("Срок")).fill("12/30")
    page.get_by_label(re.compile("CVC|CVV")).fill("123")
    page.get_by_role("button", name=re.compile("^Оплатить \\d")).click()
    page.get_by_role("heading", name="Оплата прошла").wait_for()

    # The payment numbers the УПД at once; the worker beside the server renders it: the page says so until then.
    deadline = time.monotonic() + 60
    while True:
        page.goto("/documents")
        row = page.locator("tr", has_text="оплата картой")
        assert row.count() == 1 and "УПД" in text(row)
        if "Сформирован" in text(row) or time.monotonic() > deadline:
            break
        assert "Формируется" in text(row)
        page.wait_for_timeout(250)
    assert "Сформирован" in text(row)
    assert row.get_by_role("link", name=re.compile("PDF")).count() >= 1
    shot(page, "41-company-card-documents-1280")
    axe_clean(page)
    page.set_viewport_size(PHONE)
    shot(page, "41-company-card-documents-390")
    page.goto("/checkout?plan=users-50&months=6")
    page.get_by_label(re.compile("Картой или электронными деньгами")).check()
    page.get_by_label("Оплачиваю как компания — нужен УПД").check()
    shot(page, "40-company-card-checkout-390")


def prepay_two_periods(app: Any) -> int:
    """ООО «Ромашка» has paid users-24 for 6 months and, by transfer, the next 6 months too."""
    with app.app_context(), app.extensions["portal.db"].session() as db:
        account = db.scalars(sa.select(Account).where(Account.name == "ООО «Ромашка»")).one()
        now = utcnow()
        for n in (1, 2):
            order = create_order(
                db,
                actor=None,
                account_id=account.id,
                plan_code="users-24",
                months=6,
                payer_type="invoice",
                license_version="2026-01",
                idempotency_key=f"browser-prepaid-{n}",
                now=now,
            )
            receipt, _ = ledger.record_receipt(
                db,
                account_id=account.id,
                method="staff",
                amount=order.amount,
                received_on=msk_date(now),
                source_key=f"browser-prepaid-{n}",
                reference=f"п/п № {900 + n}",
                now=now,
            )
            assert ledger.pay_order(db, receipt, order.id, now=now, config=app.config).completed
            db.commit()
        return order.amount


def test_the_owner_cancels_a_prepaid_next_period_and_its_money_is_on_the_balance(owner_page, live_server, sms_output):
    amount = prepay_two_periods(live_server)
    page = owner_page
    sign_in(page, sms_output, typed(DEMO_OWNER), DEMO_OWNER)
    page.wait_for_url(re.compile(r".*/$"))
    close_dialog(page)
    scheduled = page.locator(".scheduled")
    assert "продление «24 пользователя»" in text(scheduled)
    scheduled.get_by_role("link", name=re.compile("Отменить или изменить")).click()

    page.get_by_role("heading", name="Отменить запланированный период?").wait_for()
    shown = text(page.locator(".notice-warning"))
    assert "11 940,00 ₽, оплаченные за этот период, вернутся на баланс компании" in shown, shown
    shot(page, "42-scheduled-cancel-1280")
    axe_clean(page)
    page.set_viewport_size(PHONE)
    shot(page, "42-scheduled-cancel-390")
    page.get_by_role("button", name="Отменить период").click()

    page.wait_for_url(re.compile(r".*/$"))
    flash = text(page.locator(".flash-success"))
    assert "отменён" in flash and "на балансе компании" in flash, flash
    assert page.locator(".scheduled").count() == 0
    shot(page, "43-scheduled-cancelled-390")
    page.set_viewport_size(DESKTOP)
    shot(page, "43-scheduled-cancelled-1280")
    page.goto("/payments")
    assert "11 940,00 ₽" in text(page.locator("main"))
    assert amount == 1_194_000


def test_an_upgrade_raises_the_prepaid_next_period_in_the_same_card_payment(owner_page, live_server, sms_output):
    prepay_two_periods(live_server)
    page = owner_page
    sign_in(page, sms_output, typed(DEMO_OWNER), DEMO_OWNER)
    page.wait_for_url(re.compile(r".*/$"))
    close_dialog(page)
    [next_start] = re.findall(r"с (\d\d\.\d\d\.\d{4})", text(page.locator(".scheduled .timeline-date")))
    page.goto("/checkout?plan=users-50&months=6")
    # users-24 → users-50 for 6 months on the first day: the whole difference, for each of the two periods.
    box = page.get_by_label(f"Повысить и оплаченный период с {next_start} до 50 пользователей")
    assert box.is_checked()
    assert "+18 000,00 ₽" in text(page.locator(".checkout-lines"))
    assert text(page.locator("#checkout-total")) == "36 000,00 ₽"
    assert f"«50 пользователей» с {next_start}" in text(page.locator("#checkout-next-periods"))
    box.uncheck()  # the page says the new figure at once
    assert text(page.locator("#checkout-total")) == "18 000,00 ₽"
    box.check()
    assert text(page.locator("#checkout-total")) == "36 000,00 ₽"
    page.get_by_label(re.compile("Картой или электронными деньгами")).check()
    page.get_by_label(re.compile("Я принимаю условия")).check()
    shot(page, "44-upgrade-with-next-period-1280")
    axe_clean(page)
    page.set_viewport_size(PHONE)
    shot(page, "44-upgrade-with-next-period-390")
    page.set_viewport_size(DESKTOP)
    page.get_by_role("button", name=re.compile("Перейти к оплате картой · 36 000,00 ₽")).click()

    page.wait_for_url(re.compile(r".*/sandbox/pay/.*"))
    page.get_by_label("Номер карты").fill("4111 1111 1111 1111")
    page.get_by_label(re.compile("Срок")).fill("12/30")
    page.get_by_label(re.compile("CVC|CVV")).fill("123")
    page.get_by_role("button", name=re.compile("^Оплатить \\d")).click()
    page.get_by_role("heading", name="Оплата прошла").wait_for()

    page.goto("/")
    close_dialog(page)
    assert "50 пользователей" in text(page.locator("#plan-title"))
    scheduled = text(page.locator(".scheduled"))
    assert f"с {next_start} продление «50 пользователей»" in scheduled, scheduled
    shot(page, "45-upgraded-both-periods-1280")
    page.set_viewport_size(PHONE)
    shot(page, "45-upgraded-both-periods-390")


def test_a_smaller_plan_months_ahead_is_scheduled_without_paying_now(owner_page, live_server, sms_output):
    prepay_two_periods(live_server)
    page = owner_page
    sign_in(page, sms_output, typed(DEMO_OWNER), DEMO_OWNER)
    page.wait_for_url(re.compile(r".*/$"))
    close_dialog(page)
    page.goto("/checkout?plan=users-12&months=6")
    assert "Сейчас платить не нужно" in text(page.locator("#checkout-deferred"))
    page.get_by_label(re.compile("Картой или электронными деньгами")).check()
    page.get_by_label(re.compile("Я принимаю условия")).check()
    shot(page, "46-scheduled-smaller-checkout-1280")
    axe_clean(page)
    page.get_by_role("button", name=re.compile("Запланировать переход · оплата с")).click()

    page.wait_for_url(re.compile(r".*/$"))
    close_dialog(page)
    line = text(page.locator(".scheduled-unpaid"))
    assert re.search(r"С \d\d\.\d\d\.\d{4} — тариф 12 пользователей, оплата с \d\d\.\d\d\.\d{4}", line), line
    shot(page, "47-scheduled-smaller-dashboard-1280")
    axe_clean(page)
    page.set_viewport_size(PHONE)
    shot(page, "47-scheduled-smaller-dashboard-390")
