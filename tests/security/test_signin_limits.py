"""Brute force of the SMS code, from the attacker's side: how many guesses does one phone number give away?"""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.conftest import RecordingSms, csrf_token

VICTIM = "+79160000777"


def _post(client: FlaskClient, path: str, data: dict[str, str], **kw: Any) -> Any:
    return client.post(path, data={**data, "csrf_token": csrf_token(client, "/login")}, **kw)


def _wrong(sms: RecordingSms, phone: str) -> str:
    good = sms.last_code(phone)
    return "000000" if good != "000000" else "111111"


def test_spelling_the_number_differently_does_not_buy_more_codes(client: FlaskClient, sms: RecordingSms) -> None:
    spellings = ["+7 916 000-07-77", "8 (916) 000 07 77", "79160000777", "+79160000777"]
    statuses = [_post(client, "/login", {"phone": s}).status_code for s in spellings]
    assert statuses == [302, 302, 302, 429]
    assert [to for to, _ in sms.messages] == [VICTIM] * 3


def test_other_addresses_and_forged_forwarding_headers_do_not_buy_more_codes(app: Any, sms: RecordingSms) -> None:
    sent = []
    for i in range(5):
        client = app.test_client()  # a new session and a new address each time
        resp = _post(
            client,
            "/login",
            {"phone": VICTIM},
            environ_base={"REMOTE_ADDR": f"198.51.100.{i + 1}"},
            headers={"X-Forwarded-For": f"203.0.113.{i + 1}", "X-Real-IP": f"203.0.113.{i + 1}"},
        )
        sent.append(resp.status_code)
    assert sent == [302, 302, 302, 429, 429]
    assert len(sms.messages) == 3


def test_the_per_address_limit_ignores_a_forged_x_forwarded_for(app: Any, client: FlaskClient, sms) -> None:
    """Without a proxy configured (PROXY_FIX_HOPS=0) the header is the attacker's text, not an address."""
    app.config["SMS_SEND_LIMIT_PER_IP"] = "3 per hour"
    statuses = [
        _post(client, "/login", {"phone": f"+7916000080{i}"}, headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
        for i in range(5)
    ]
    assert statuses == [302, 302, 302, 429, 429]
    assert len(sms.messages) == 3


def test_one_number_gives_at_most_fifteen_guesses_in_ten_minutes(
    client: FlaskClient, sms: RecordingSms, make_account: Any
) -> None:
    make_account(owner_phone=VICTIM)
    checked = 0
    for _round in range(4):
        if _post(client, "/login", {"phone": VICTIM}).status_code != 302:
            break
        wrong = _wrong(sms, VICTIM)
        for _ in range(10):  # the attacker tries more than allowed
            body = _post(client, "/login/code", {"code": wrong}).get_data(as_text=True)
            if "Осталось попыток" in body:
                checked += 1
            elif "Слишком много неверных попыток" in body:
                checked += 1  # the fifth wrong try is checked and locks the code
                break
    assert len(sms.messages) == 3
    assert checked == 15
    # The last code, though right, is dead after five wrong tries: no sign-in came out of it.
    resp = _post(client, "/login/code", {"code": sms.last_code(VICTIM)})
    assert resp.status_code in (400, 429)
    assert client.get("/").headers.get("Location", "").startswith("/login")


def test_a_fresh_session_does_not_reset_the_attempts_of_a_code(app: Any, sms: RecordingSms, make_account: Any) -> None:
    make_account(owner_phone=VICTIM)
    first = app.test_client()
    _post(first, "/login", {"phone": VICTIM})
    wrong = _wrong(sms, VICTIM)
    for _ in range(5):
        _post(first, "/login/code", {"code": wrong})
    # A second browser has no pending sign-in: it cannot guess without sending (and paying for) a new SMS.
    second = app.test_client()
    resp = _post(second, "/login/code", {"code": sms.last_code(VICTIM)})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
    assert second.get("/").headers.get("Location", "").startswith("/login")


def test_guessing_the_code_is_limited_per_address_too(app: Any, sms: RecordingSms, make_account: Any) -> None:
    """Many victims from one address: the code form takes at most 30 tries per 10 minutes from it."""
    answers = []
    for i in range(11):
        phone = f"+791600009{i:02d}"
        make_account(owner_phone=phone)
        client = app.test_client()
        if _post(client, "/login", {"phone": phone}).status_code != 302:
            break
        wrong = _wrong(sms, phone)
        for _ in range(3):
            answers.append(_post(client, "/login/code", {"code": wrong}).status_code)
    assert answers[:30] == [400] * 30
    assert set(answers[30:]) == {429}
