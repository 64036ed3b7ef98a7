"""Connecting the CRM: the OAuth 2.0 code flow through the emulator's consent page, state check, disconnect."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa

from devtools.crm_emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from portal.audit import AuditLog
from portal.seats.crm.base import CrmError
from portal.seats.crm.factory import CrmSettings
from portal.seats.crm.models import CrmConnection
from portal.seats.crm.tokens import read_tokens
from tests.conftest import post

OWNER = "+79990000001"
MEMBER = "+79160010001"
ACCOUNTANT = "+79160019999"


@pytest.fixture
def setup(crm_app_config: dict[str, Any], app: Any, db: Any, make_account: Any, served: Any, auth: Any) -> Any:
    url, emulator = served
    # The integration as registered in the CRM: the CRM sends the owner back to the portal's callback.
    emulator.register_integration(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, "http://localhost/crm/callback")
    emulator.seed(6, seed=21)
    account = make_account(name="ООО «Ромашка»", owner_phone=OWNER, members=1, accountant_phone=ACCOUNTANT)
    return account, emulator, url


def consent(url: str, location: str, decision: str = "allow") -> str:
    """What the owner does in the CRM's window: sees the request, presses «Разрешить» (or «Отклонить»)."""
    page = requests.get(location, timeout=5)
    assert page.status_code == 200 and "Разрешить" in page.text and "пользователи и отделы" in page.text
    query = parse_qs(urlsplit(location).query)
    answer = requests.post(
        f"{url}/oauth",
        data={k: v[0] for k, v in query.items()} | {"decision": decision},
        allow_redirects=False,
        timeout=5,
    )
    assert answer.status_code == 302
    return answer.headers["Location"]


def start(client: Any) -> str:
    resp = post(client, "/crm/connect")
    assert resp.status_code == 302
    return resp.headers["Location"]


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_owner_connects_the_crm_and_the_first_sync_imports_its_users(
    setup: Any, client: Any, auth: Any, db: Any, caplog: Any
) -> None:
    account, emulator, url = setup
    caplog.set_level(logging.DEBUG)
    auth.login(OWNER)
    page = client.get("/crm").get_data(as_text=True)
    assert "Подключить amoCRM" in page and "Пользователь удалён в CRM" in page

    location = start(client)

    query = parse_qs(urlsplit(location).query)
    assert location.startswith(f"{url}/oauth?")
    assert query["client_id"] == [DEFAULT_CLIENT_ID] and query["mode"] == ["post_message"]
    assert len(query["state"][0]) >= 40
    callback = consent(url, location)
    assert callback.startswith("http://localhost/crm/callback?") and "code=" in callback

    done = client.get(local(callback))

    assert done.status_code == 302 and done.headers["Location"].endswith("/crm")
    page = client.get("/crm").get_data(as_text=True)
    assert "CRM подключена: ООО «Ромашка» (demo)." in page
    assert "Синхронизация выполнена." in page and "Первое подключение" in page
    connection = db.scalars(sa.select(CrmConnection)).one()
    assert connection.account_id == account.id and connection.status == "connected"
    assert connection.crm_account_id == emulator.account()["id"] and connection.imported_at is not None
    tokens = read_tokens(connection, CrmSettings.from_config(client.application.config).cipher)
    # The stored tokens work against the CRM…
    assert requests.get(
        f"{url}/api/v4/account", headers={"Authorization": f"Bearer {tokens.access_token}"}, timeout=5
    ).ok
    # …and never appear in a page or a log line.
    pages = page + client.get("/crm/runs/1").get_data(as_text=True)
    for secret in (tokens.access_token, tokens.refresh_token):
        assert secret not in pages and secret not in caplog.text
        assert secret not in (connection.access_token_enc or "") + (connection.refresh_token_enc or "")
    assert db.scalars(sa.select(AuditLog).where(AuditLog.action == "crm.connected")).one().actor_user_id


def test_a_wrong_state_is_refused_and_nothing_is_stored(setup: Any, client: Any, auth: Any, db: Any) -> None:
    _account, _emulator, url = setup
    auth.login(OWNER)
    callback = consent(url, start(client))
    forged = local(callback).replace("state=", "state=x")

    resp = client.get(forged)

    assert resp.status_code == 400
    assert "Начните подключение заново" in resp.get_data(as_text=True)
    assert db.scalars(sa.select(CrmConnection)).all() == []
    # The state is single-use: even the genuine answer is refused once a wrong one was tried.
    assert client.get(local(callback)).status_code == 400


def test_a_callback_nobody_started_is_refused(setup: Any, client: Any, auth: Any, db: Any) -> None:
    auth.login(OWNER)

    resp = client.get("/crm/callback?code=abc&state=abc&referer=127.0.0.1")

    assert resp.status_code == 400 and db.scalars(sa.select(CrmConnection)).all() == []


def test_denied_access_connects_nothing(setup: Any, client: Any, auth: Any, db: Any) -> None:
    _account, _emulator, url = setup
    auth.login(OWNER)

    resp = client.get(local(consent(url, start(client), decision="deny")), follow_redirects=True)

    assert "Доступ к CRM не предоставлен" in resp.get_data(as_text=True)
    assert db.scalars(sa.select(CrmConnection)).all() == []


def test_owner_disconnects_and_the_tokens_are_gone(setup: Any, client: Any, auth: Any, db: Any) -> None:
    _account, emulator, url = setup
    auth.login(OWNER)
    client.get(local(consent(url, start(client))))
    users_before = client.get("/crm").get_data(as_text=True).count("crm-entry ")

    resp = post(client, "/crm/disconnect", follow_redirects=True)

    page = resp.get_data(as_text=True)
    assert "CRM отключена: ключи доступа удалены" in page and "Подключить amoCRM" in page
    db.expire_all()
    connection = db.scalars(sa.select(CrmConnection)).one()
    assert connection.status == "disconnected"
    assert connection.access_token_enc is None and connection.refresh_token_enc is None
    assert users_before > 0
    assert post(client, "/crm/sync", follow_redirects=True).status_code == 200  # nothing to sync, no crash
    assert db.scalars(sa.select(AuditLog).where(AuditLog.action == "crm.disconnected")).one()


@pytest.mark.parametrize("phone", [MEMBER, ACCOUNTANT])
def test_only_the_owner_reaches_the_crm_pages(setup: Any, client: Any, auth: Any, phone: str) -> None:
    auth.login(phone)

    assert client.get("/crm").status_code == 403
    assert client.get("/crm/callback?code=a&state=b").status_code == 403
    for path in ("/crm/connect", "/crm/sync", "/crm/disconnect", "/crm/outbox/1/retry"):
        assert post(client, path).status_code == 403, path
    assert 'href="/crm"' not in client.get("/").get_data(as_text=True)


def test_visitors_are_sent_to_sign_in(setup: Any, client: Any) -> None:
    resp = client.get("/crm")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_the_owner_finds_crm_in_the_menu(setup: Any, client: Any, auth: Any) -> None:
    auth.login(OWNER)
    assert '<a href="/crm"' in client.get("/crm").get_data(as_text=True)


def test_amocrm_accounts_only_at_their_own_host() -> None:
    settings = CrmSettings(
        backend="amocrm",
        emulator_url="http://127.0.0.1:5055",
        client_id="id",
        client_secret="secret",
        redirect_uri="https://portal.example/crm/callback",
        secret_key="k",
    )

    assert settings.account_base_url("Romashka.amocrm.ru") == ("https://romashka.amocrm.ru", "romashka")
    assert settings.authorize_url("st").startswith("https://www.amocrm.ru/oauth?client_id=id&state=st&mode=")
    for referer in ("evil.example", "romashka.amocrm.ru.evil.example", "", None, "a/b.amocrm.ru"):
        with pytest.raises(CrmError):
            settings.account_base_url(referer)
