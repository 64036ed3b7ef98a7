"""Russian mobile numbers where the phone library's metadata lags the numbering plan, and the SMS gateway's word."""

from __future__ import annotations

import pytest
import responses

from portal.accounts.phone import InvalidPhone, format_phone, normalize_phone
from portal.accounts.sms import HttpSms, SmsError, SmsRecipientRefused
from tests.conftest import post

# In a range of code 930 that phonenumbers 9.0.43 calls invalid (is_valid_number is False), while the plan's
# registry gives code 930 to mobile operators.
LAGGING = "+79300381234"
GATEWAY = "https://sms.example/sms/send"


def test_a_mobile_number_in_a_range_the_library_does_not_know_yet_signs_in(client, sms):
    resp = post(client, "/login", {"phone": "8 (930) 038-12-34"})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    assert resp.headers["Location"].endswith("/login/code")
    assert sms.messages[-1][0] == LAGGING


@pytest.mark.parametrize("code", range(900, 1000))
def test_every_well_formed_plus_7_9xx_number_is_accepted(code):
    for block in ("000", "038", "650", "999"):
        assert normalize_phone(f"+7 {code} {block}-12-34") == f"+7{code}{block}1234"


@pytest.mark.parametrize(
    "typed",
    ["+7 930 038-12-3", "+7 930 038-12-345", "+7 830 038-12-34", "+7 030 038-12-34", "930 038"],
)
def test_a_mobile_number_with_wrong_digits_is_still_refused(typed):
    with pytest.raises(InvalidPhone):
        normalize_phone(typed)


def test_a_number_in_a_new_range_is_shown_as_russian_mobiles_are_written():
    assert format_phone(LAGGING) == "+7 930 038-12-34"
    assert format_phone("+79991234567") == "+7 999 123-45-67"


def gateway_answers(status: str, status_code: int, status_text: str) -> None:
    responses.add(
        responses.POST,
        GATEWAY,
        json={
            "status": "OK",
            "status_code": 100,
            "sms": {LAGGING[1:]: {"status": status, "status_code": status_code, "status_text": status_text}},
            "balance": 4122.56,
        },
    )


@responses.activate
def test_the_gateway_refusing_the_number_is_a_refusal_of_that_number():
    gateway_answers("ERROR", 202, "Неправильно указан номер телефона получателя, либо на него нет маршрута")
    with pytest.raises(SmsRecipientRefused) as refused:
        HttpSms(GATEWAY, "key").send(LAGGING, "Код 123456")
    assert str(refused.value) == "Неправильно указан номер телефона получателя, либо на него нет маршрута"
    assert isinstance(refused.value, SmsError)


@pytest.fixture
def gateway_app_config(app_config):
    app_config["SMS_BACKEND_OBJECT"] = HttpSms(GATEWAY, "key")
    return app_config


@responses.activate
def test_sign_in_shows_the_gateways_refusal_of_the_number_at_the_field(gateway_app_config, client):
    gateway_answers("ERROR", 202, "Неправильно указан номер телефона получателя, либо на него нет маршрута")
    resp = post(client, "/login", {"phone": "+7 930 038-12-34"})
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert (
        "SMS-шлюз не доставляет сообщения на этот номер: «Неправильно указан номер телефона получателя, либо на "
        "него нет маршрута». Проверьте номер или укажите другой." in html
    )
    assert "Попробуйте через минуту" not in html
