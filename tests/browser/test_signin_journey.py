"""A person signs in and registers through a real browser."""

from __future__ import annotations

import pytest

from tests.browser.conftest import shot, sign_in

pytestmark = pytest.mark.browser


def test_demo_owner_signs_in_with_code_from_sms_output(page, sms_output):
    page.goto("/login")
    shot(page, "01-login")
    sign_in(page, sms_output, "8 999 000-00-01", "+79990000001")
    page.wait_for_url("**/")
    assert "ООО «Ромашка»" in page.content()
    shot(page, "02-dashboard-owner")


def test_bad_phone_shows_message_next_to_field(page):
    page.goto("/login")
    page.get_by_label("Номер телефона").fill("123")
    page.get_by_role("button", name="Получить код").click()
    assert page.locator(".field.has-error .error").inner_text().strip() != ""
    assert page.url.endswith("/login")
