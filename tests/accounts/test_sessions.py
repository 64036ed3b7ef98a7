"""Sessions that end: sign-out ends the session on the server, «Выйти на всех устройствах» ends every one, the
state between the SMS code and registration is used once, and session protection trusts no client header."""

from __future__ import annotations

import sqlalchemy as sa
from flask.testing import FlaskClient

from portal.accounts.models import Account
from tests.conftest import csrf_token, post

OWNER = "+79161230001"


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def _replay(app, cookie: str, path: str = "/", **kw) -> FlaskClient:
    """Another browser that holds a copy of the cookie."""
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    return thief.get(path, **kw)


def test_a_cookie_replayed_after_sign_out_is_sent_to_the_sign_in_page(app, client, auth, make_account):
    make_account(owner_phone=OWNER)
    auth.login(OWNER)
    assert client.get("/").status_code == 200
    copied = _cookie(client)
    assert _replay(app, copied).status_code == 200  # the copy works while the session lives

    resp = auth.logout()
    assert resp.status_code == 302

    resp = _replay(app, copied)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    assert _replay(app, copied, "/documents").status_code == 302


def test_sign_out_everywhere_ends_every_session_of_the_person_but_not_of_others(app, client, auth, make_account, sms):
    make_account(owner_phone=OWNER)
    other_phone = "+79161230002"
    make_account(owner_phone=other_phone)
    laptop = client
    auth.login(OWNER)
    phone_client = app.test_client()
    token = csrf_token(phone_client, "/login")
    phone_client.post("/login", data={"phone": OWNER, "csrf_token": token})
    phone_client.post("/login/code", data={"code": sms.last_code(OWNER), "csrf_token": token})
    assert phone_client.get("/").status_code == 200
    stranger = app.test_client()
    token = csrf_token(stranger, "/login")
    stranger.post("/login", data={"phone": other_phone, "csrf_token": token})
    stranger.post("/login/code", data={"code": sms.last_code(other_phone), "csrf_token": token})

    page = laptop.get("/profile").get_data(as_text=True)
    assert "Выйти на всех устройствах" in page
    resp = post(laptop, "/profile/sessions/end", {}, base_url="http://localhost")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]

    assert phone_client.get("/").status_code == 302
    assert laptop.get("/").status_code == 302
    assert stranger.get("/").status_code == 200


def test_the_state_after_the_sms_code_registers_one_company_only(app, client, auth, db):
    phone = "+79161239999"
    auth.login(phone)
    before_registration = _cookie(client)
    resp = post(client, "/register", {"name": "Анна", "company": "ООО «Первая»", "email": ""})
    assert resp.status_code == 302

    for n in range(2, 5):
        replay = app.test_client()
        replay.set_cookie("session", before_registration)
        page = replay.get("/register")
        token = csrf_token(replay, "/login")
        resp = replay.post(
            "/register", data={"name": "Анна", "company": f"ООО «Номер {n}»", "email": "", "csrf_token": token}
        )
        assert resp.status_code == 302 and "/login" in resp.headers["Location"], page.status_code
    assert db.scalar(sa.select(sa.func.count()).select_from(Account)) == 1


def test_session_protection_does_not_trust_a_client_supplied_forwarded_for(app, client, auth, make_account):
    """Without a proxy (PROXY_FIX_HOPS=0) X-Forwarded-For is whatever the client wrote: the session is bound to the
    address the server saw, so a copied cookie sent from elsewhere with the victim's header does not pass."""
    make_account(owner_phone=OWNER)
    victim = {"REMOTE_ADDR": "10.1.1.1"}
    resp = post(client, "/login", {"phone": OWNER}, environ_base=victim)
    assert resp.status_code == 302
    code = auth.sms.last_code(OWNER)
    post(client, "/login/code", {"code": code}, environ_base=victim, headers={"X-Forwarded-For": "203.0.113.7"})
    assert client.get("/", environ_base=victim, headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 200
    copied = _cookie(client)

    thief = app.test_client()
    thief.set_cookie("session", copied)
    resp = thief.get("/", environ_base={"REMOTE_ADDR": "10.9.9.9"}, headers={"X-Forwarded-For": "203.0.113.7"})
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    # The person's own browser changing nothing but the header it sends keeps its session.
    assert client.get("/", environ_base=victim, headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200


def test_codes_go_only_to_the_countries_in_the_setting(app, client, sms, db):
    """Issue #14, SMS pumping: any international number got an SMS. Russia by default."""
    from portal.accounts.models import SmsCode

    for foreign in ("+77012345678", "+12025550123", "+447911123456"):
        resp = post(client, "/login", {"phone": foreign})
        assert resp.status_code == 400, foreign
        assert "На номера этой страны мы не отправляем SMS" in resp.get_data(as_text=True)
    assert sms.messages == [] and db.scalar(sa.select(sa.func.count()).select_from(SmsCode)) == 0
    assert post(client, "/login", {"phone": "+79161234567"}).status_code == 302
    app.config["SMS_ALLOWED_COUNTRIES"] = "RU, KZ"
    assert post(app.test_client(), "/login", {"phone": "+77012345678"}).status_code == 302
