"""ООО «Ромашка» has 9 active users on the free plan (5): everyone there sees the over-limit dialog, the owner pays
from it; without JavaScript the same message is a banner; a company within its plan sees nothing of it."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import shot, sign_in

pytestmark = pytest.mark.browser

TITLE = "Превышен тариф по количеству пользователей"


def text(locator) -> str:
    return " ".join(locator.inner_text().replace("\xa0", " ").split())


def dialog_state(page) -> dict:
    return page.evaluate(
        """() => {
            const d = document.getElementById('over-limit-dialog');
            return d && {open: d.open, modal: d.matches(':modal'), focusInside: d.contains(document.activeElement),
                         focused: document.activeElement && document.activeElement.textContent.trim()};
        }"""
    )


def test_a_member_sees_the_modal_keeps_focus_in_it_closes_it_with_esc_and_then_sees_the_banner(page, sms_output):
    sign_in(page, sms_output, "+7 999 000-00-10", "+79990000010")
    page.wait_for_url(re.compile(r".*/$"))
    dialog = page.locator("#over-limit-dialog")
    dialog.wait_for(state="visible")
    assert dialog_state(page) == {"open": True, "modal": True, "focusInside": True, "focused": "Понятно"}
    body = text(dialog)
    assert TITLE in body and "9 активных пользователей" in body and "позволяет 5" in body
    # A member is told whom to ask, and has no pay button.
    assert "Анна Смирнова" in body and "+7 999 000-00-01" in body
    assert dialog.get_by_role("link", name=re.compile("Оплатить")).count() == 0
    assert not page.locator("#limit-banner").is_visible()  # with JavaScript the dialog replaces the banner
    shot(page, "20-over-limit-member-dialog")
    for _ in range(4):  # Tab cycles within the dialog, never to the page behind it
        page.keyboard.press("Tab")
        assert dialog_state(page)["focusInside"]
    page.keyboard.press("Escape")
    assert dialog_state(page)["open"] is False
    assert not dialog.is_visible()
    shot(page, "21-over-limit-member-closed")
    # Closed for this page only. Where the fix is made (the plans page) it is a banner, not in the way…
    page.goto("/plans")
    assert page.locator("#limit-banner").is_visible() and "Тариф превышен" in text(page.locator("#limit-banner"))
    assert dialog.count() == 0
    # …and once is enough: the next ordinary page has the one-line banner, not the dialog again (issue #15).
    page.goto("/")
    assert dialog.count() == 0 and page.locator("#limit-banner").is_visible()
    assert "Тариф превышен: 9 из 5 пользователей." in text(page.locator(".limit-line"))


def test_the_owner_pays_from_the_modal_with_the_suggested_plan_preselected(page, sms_output):
    sign_in(page, sms_output, "8 999 000-00-01", "+79990000001")
    page.wait_for_url(re.compile(r".*/$"))
    dialog = page.locator("#over-limit-dialog")
    dialog.wait_for(state="visible")
    state = dialog_state(page)
    assert state["open"] and state["modal"] and state["focusInside"]
    assert state["focused"] == "Оплатить тариф «12 пользователей»"
    assert "Подходящий тариф — «12 пользователей»: 5 940,00 ₽ (за 6 месяцев, с " in text(dialog)
    assert dialog.get_by_role("link", name="Управлять командой").is_visible()
    shot(page, "22-over-limit-owner-dialog")
    dialog.get_by_role("link", name="Оплатить тариф «12 пользователей»").click()
    page.wait_for_url(re.compile(r".*/checkout\?.*plan=users-12.*"))
    summary = text(page.locator(".checkout-summary"))
    assert "12 пользователей" in summary and "6 месяцев" in summary and "5 940,00 ₽" in summary
    shot(page, "23-checkout-from-modal")
    # Where the owner fixes it otherwise: the team page (a banner there, not the dialog).
    page.goto("/team")
    assert page.locator("#over-limit-dialog").count() == 0 and page.locator("#limit-banner").is_visible()
    shot(page, "25-team-page-owner")


def test_without_javascript_the_same_message_is_a_banner(nojs_page, sms_output):
    sign_in(nojs_page, sms_output, "+79990000010", "+79990000010")
    nojs_page.wait_for_url(re.compile(r".*/$"))
    banner = nojs_page.locator("#limit-banner")
    assert banner.is_visible()
    assert "Тариф превышен: 9 из 5 пользователей." in text(banner)
    banner.get_by_text("Подробнее").click()  # a <details>: unfolds without JavaScript
    body = text(banner)
    assert TITLE in body and "9 активных пользователей" in body and "Анна Смирнова" in body
    assert not nojs_page.locator("#over-limit-dialog").is_visible()
    shot(nojs_page, "24-over-limit-banner-nojs")


def test_a_company_within_its_plan_sees_no_warning(page, sms_output):
    sign_in(page, sms_output, "+79990000003", "+79990000003")
    page.wait_for_url(re.compile(r".*/$"))
    assert page.locator("#over-limit-dialog").count() == 0 and page.locator("#limit-banner").count() == 0
