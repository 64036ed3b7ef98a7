"""Sign-in and registration by phone and SMS code, end to end through the test client with CSRF on."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from freezegun import freeze_time

from portal.accounts.models import Account, Membership, SmsCode, User
from portal.audit import AuditLog
from tests.conftest import csrf_token, post


def test_phone_forms_people_type_are_normalised(client, sms):
    for typed in ("8 999 123-45-67", "+7 (999) 123 45 67", "79991234567"):
        resp = post(client, "/login", {"phone": typed})
        assert resp.status_code == 302
        assert resp.headers["Location"].endswith("/login/code")
        assert sms.messages[-1][0] == "+79991234567"


def test_code_is_stored_hashed_never_plain(client, sms, db):
    post(client, "/login", {"phone": "+79991234567"})
    code = sms.last_code("+79991234567")
    row = db.scalars(sa.select(SmsCode)).one()
    assert code not in row.code_hash and len(row.code_hash) == 64


def test_invalid_phone_gets_message_next_to_field_and_sends_nothing(client, sms, db):
    resp = post(client, "/login", {"phone": "12345"})
    assert resp.status_code == 400
    assert "Такого номера не существует" in resp.get_data(as_text=True) or "Не похоже" in resp.get_data(as_text=True)
    assert sms.messages == []
    assert db.scalar(sa.select(sa.func.count()).select_from(SmsCode)) == 0


def test_new_phone_registers_as_owner_of_new_free_account(client, auth, db):
    resp = auth.login("+79161112233")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/register")
    resp = post(client, "/register", {"name": "Анна", "company": "ООО «Вектор»", "email": ""})
    assert resp.status_code == 302
    user = db.scalars(sa.select(User).where(User.phone == "+79161112233")).one()
    m = db.scalars(sa.select(Membership).where(Membership.user_id == user.id)).one()
    assert m.role == "owner" and m.status == "active"
    assert db.get(Account, m.account_id).name == "ООО «Вектор»"
    assert db.scalars(sa.select(AuditLog).where(AuditLog.action == "account.registered")).one()
    page = client.get("/").get_data(as_text=True)
    assert "ООО «Вектор»" in page


def test_registering_with_an_email_keeps_it_and_a_mistyped_one_is_named_at_the_field(client, auth, db):
    """The e-mail field is optional, but a person who fills it in must not meet a server error (its validator needs
    the email-validator package, which nothing installed once)."""
    auth.login("+79161112234")
    resp = post(client, "/register", {"name": "Дмитрий", "company": "ООО «Дима»", "email": "dima@example"})
    assert resp.status_code == 400
    assert "Проверьте адрес почты" in resp.get_data(as_text=True)
    assert db.scalar(sa.select(sa.func.count()).select_from(Account)) == 0
    resp = post(client, "/register", {"name": "Дмитрий", "company": "ООО «Дима»", "email": " dima@example.ru "})
    assert resp.status_code == 302
    user = db.scalars(sa.select(User).where(User.phone == "+79161112234")).one()
    assert user.email == "dima@example.ru"


def test_existing_user_signs_in_and_out(client, auth, make_account):
    make_account(name="ООО «Старт»", owner_phone="+79160000001")
    resp = auth.login("+79160000001")
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    assert "ООО «Старт»" in client.get("/").get_data(as_text=True)
    # Sign-out is a POST with CSRF; a GET does nothing.
    assert client.get("/logout").status_code == 405
    resp = auth.logout()
    assert resp.status_code == 302
    assert client.get("/").headers["Location"].startswith("/login")


def test_wrong_code_counts_attempts_and_locks_after_five(client, auth, sms, make_account):
    make_account(owner_phone="+79160000002")
    post(client, "/login", {"phone": "+79160000002"})
    good = sms.last_code("+79160000002")
    wrong = "000000" if good != "000000" else "111111"
    for left in (4, 3, 2, 1):
        resp = post(client, "/login/code", {"code": wrong})
        assert resp.status_code == 400
        assert f"Осталось попыток: {left}" in resp.get_data(as_text=True)
    resp = post(client, "/login/code", {"code": wrong})
    assert "Слишком много неверных попыток" in resp.get_data(as_text=True)
    # Even the right code no longer works: the person must ask for a new one.
    resp = post(client, "/login/code", {"code": good})
    assert resp.status_code == 400
    assert "Слишком много неверных попыток" in resp.get_data(as_text=True)


def test_expired_code_is_refused(client, sms, make_account):
    make_account(owner_phone="+79160000003")
    with freeze_time("2026-11-25 10:00:00") as frozen:
        post(client, "/login", {"phone": "+79160000003"})
        code = sms.last_code("+79160000003")
        frozen.tick(timedelta(minutes=5, seconds=1))
        resp = post(client, "/login/code", {"code": code})
    assert resp.status_code == 400
    assert "Срок действия кода истёк" in resp.get_data(as_text=True)


def test_malformed_code_gets_clear_message(client, sms, make_account):
    make_account(owner_phone="+79160000004")
    post(client, "/login", {"phone": "+79160000004"})
    resp = post(client, "/login/code", {"code": "12ab"})
    assert resp.status_code == 400
    assert "6 цифр" in resp.get_data(as_text=True)


def test_sending_is_rate_limited_per_phone(client, sms):
    statuses = [post(client, "/login", {"phone": "+79995550001"}).status_code for _ in range(4)]
    assert statuses == [302, 302, 302, 429]
    assert len(sms.messages) == 3
    assert "Слишком много запросов" in post(client, "/login", {"phone": "+79995550001"}).get_data(as_text=True)


def test_over_the_limit_the_answer_is_the_form_with_the_number_and_the_wait(client, sms):
    """It was a bare «429» page: no form, no number, no word of how long to wait."""
    for _ in range(3):
        post(client, "/login", {"phone": "+7 999 555-00-02"})
    resp = post(client, "/login", {"phone": "+7 999 555-00-02"})
    assert resp.status_code == 429
    html = resp.get_data(as_text=True)
    assert re.search(r"Новый код можно запросить через \d+ мин\.", html)
    assert re.search(r'<input[^>]*name="phone"[^>]*value="\+7 999 555-00-02"', html)
    assert "Получить код" in html  # the form itself, to try again later


def test_only_sent_codes_count_against_the_limit(client, sms):
    """Mistyped numbers used to eat the three codes a person may ask for."""
    for bad in ("+7 999 555", "abc", "+7 999 555-00-0"):
        assert post(client, "/login", {"phone": bad}).status_code == 400
    statuses = [post(client, "/login", {"phone": "+79995550003"}).status_code for _ in range(3)]
    assert statuses == [302, 302, 302] and len(sms.messages) == 3


def test_asking_for_a_new_code_keeps_the_number(client, sms):
    """«Другой номер или новый код» forgot the phone."""
    assert post(client, "/login", {"phone": "8 999 555 00 04"}).status_code == 302
    code_page = client.get("/login/code").get_data(as_text=True)
    assert 'href="/login"' in code_page and "Другой номер или новый код" in code_page
    html = client.get("/login").get_data(as_text=True)
    assert re.search(r'<input[^>]*name="phone"[^>]*value="\+7 999 555-00-04"', html)


@pytest.mark.parametrize("typed", ["694 419", "694-419", "694\u00a0419", " 694419 "])
def test_the_code_is_accepted_as_the_sms_shows_it(client, sms, make_account, typed):
    """A pasted «694 419» was cut to «694 41» by maxlength and refused."""
    make_account(owner_phone="+79995550005")
    post(client, "/login", {"phone": "+79995550005"})
    code = sms.last_code("+79995550005")
    spaced = typed.replace("694", code[:3]).replace("419", code[3:])
    html = client.get("/login/code").get_data(as_text=True)
    assert "maxlength" not in html
    resp = post(client, "/login/code", {"code": spaced})
    assert resp.status_code == 302 and resp.headers["Location"] == "/"


def test_sending_is_rate_limited_per_ip(app, client, sms):
    app.config["SMS_SEND_LIMIT_PER_IP"] = "2 per hour"
    assert post(client, "/login", {"phone": "+79995550011"}).status_code == 302
    assert post(client, "/login", {"phone": "+79995550012"}).status_code == 302
    assert post(client, "/login", {"phone": "+79995550013"}).status_code == 429
    assert len(sms.messages) == 2


def test_missing_csrf_token_is_refused_and_sends_nothing(client, sms):
    resp = client.post("/login", data={"phone": "+79991234567"})
    assert resp.status_code == 400
    assert "Форма устарела" in resp.get_data(as_text=True)
    assert sms.messages == []


def test_tampered_session_cookie_is_not_a_sign_in(client, auth, make_account):
    make_account(owner_phone="+79160000005")
    auth.login("+79160000005")
    cookie = client.get_cookie("session")
    assert cookie is not None
    value = cookie.value
    client.set_cookie("session", value[:-3] + ("aaa" if not value.endswith("aaa") else "bbb"))
    resp = client.get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_session_is_renewed_on_sign_in(client, auth, make_account):
    make_account(owner_phone="+79160000006")
    token_before = csrf_token(client, "/login")
    auth.login("+79160000006")
    with client.session_transaction() as s:
        assert s.get("csrf_token") is None or s.get("csrf_token") != token_before
        assert "login_phone" not in s


def test_open_redirect_after_sign_in_is_ignored(client, sms, make_account):
    make_account(owner_phone="+79160000007")
    post(client, "/login?next=https://evil.example/", {"phone": "+79160000007"})
    resp = post(client, "/login/code", {"code": sms.last_code("+79160000007")})
    assert resp.headers["Location"] == "/"
