"""Connecting a CRM account: the authorize page, the code exchange, refresh and the state check."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devtools.crm_emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator, running_emulator
from portal.seats.crm import AmoCrmClient, CrmAuthError, CrmUnavailable, MemoryTokenStore
from portal.seats.crm.oauth import (
    authorize_url,
    check_state,
    exchange_code,
    new_state,
    refresh,
    token_url_for,
)

from .conftest import REDIRECT_URI


@pytest.fixture
def crm() -> Iterator[tuple[str, Emulator]]:
    with running_emulator(redirect_uri=REDIRECT_URI, token_ttl=3600) as pair:
        yield pair


def _grant(base: str, state: str, decision: str = "allow") -> dict[str, str]:
    """Play the account owner: open the authorize page, press a button, read where the CRM sends them."""
    with requests.Session() as browser:
        page = browser.get(authorize_url(DEFAULT_CLIENT_ID, state, base=f"{base}/oauth"), timeout=5)
        assert page.status_code == 200 and "Разрешить" in page.text
        answer = browser.post(
            f"{base}/oauth",
            data={"client_id": DEFAULT_CLIENT_ID, "state": state, "mode": "post_message", "decision": decision},
            allow_redirects=False,
            timeout=5,
        )
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_authorize_url_carries_client_state_and_mode() -> None:
    url = authorize_url("abc-123", "s t&x", mode="popup")

    assert url.startswith("https://www.amocrm.ru/oauth?")
    assert parse_qs(urlsplit(url).query) == {"client_id": ["abc-123"], "state": ["s t&x"], "mode": ["popup"]}
    with pytest.raises(ValueError):
        authorize_url("abc", "s", mode="redirect")  # type: ignore[arg-type]


def test_state_is_random_and_checked_exactly() -> None:
    states = {new_state() for _ in range(50)}
    state = states.pop()

    assert len(states) == 49 and len(state) >= 40
    assert check_state(state, state)
    assert not check_state(state, state[:-1] + ("A" if state[-1] != "A" else "B"))
    assert not check_state(state, None) and not check_state(None, state) and not check_state("", "")


def test_owner_allows_access_and_the_code_becomes_working_tokens(crm: tuple[str, Emulator]) -> None:
    base, emulator = crm
    emulator.seed(3)
    state = new_state()

    back = _grant(base, state)
    before = datetime.now(UTC)
    tokens = exchange_code(token_url_for(base), DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, back["code"], REDIRECT_URI)

    assert check_state(state, back["state"])
    assert back["referer"] == urlsplit(base).netloc
    assert tokens.expires_at.tzinfo is not None
    assert before + timedelta(seconds=3590) <= tokens.expires_at <= datetime.now(UTC) + timedelta(seconds=3600)
    client = AmoCrmClient(base, MemoryTokenStore(tokens))
    assert len(client.list_users()) == 3


def test_code_works_only_once(crm: tuple[str, Emulator]) -> None:
    base, _ = crm
    code = _grant(base, new_state())["code"]
    exchange_code(token_url_for(base), DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, code, REDIRECT_URI)

    with pytest.raises(CrmAuthError) as failure:
        exchange_code(token_url_for(base), DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, code, REDIRECT_URI)

    assert failure.value.message.startswith("Не удалось подключить CRM: код авторизации не принят")
    assert "уже использован" in failure.value.message


def test_owner_declines(crm: tuple[str, Emulator]) -> None:
    back = _grant(crm[0], "xyz", decision="deny")

    assert back == {"error": "access_denied", "state": "xyz"}


def test_wrong_secret_or_redirect_is_refused(crm: tuple[str, Emulator]) -> None:
    base, _ = crm
    code = _grant(base, new_state())["code"]

    with pytest.raises(CrmAuthError, match="client_secret"):
        exchange_code(token_url_for(base), DEFAULT_CLIENT_ID, "wrong", code, REDIRECT_URI)
    with pytest.raises(CrmAuthError, match="redirect_uri"):
        exchange_code(token_url_for(base), DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, code, "https://evil.example/")


def test_refresh_rotates_the_pair_and_the_old_refresh_token_dies(crm: tuple[str, Emulator]) -> None:
    base, emulator = crm
    first = emulator.issue_tokens()
    url = token_url_for(base)

    second = refresh(url, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, first.refresh_token, REDIRECT_URI)

    assert second.access_token != first.access_token and second.refresh_token != first.refresh_token
    assert AmoCrmClient(base, MemoryTokenStore(second)).account_info().subdomain == "demo"
    with pytest.raises(CrmAuthError, match="Токен обновления недействителен"):
        refresh(url, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, first.refresh_token, REDIRECT_URI)


def test_unreachable_token_endpoint_is_unavailable_not_an_auth_error() -> None:
    with running_emulator() as (gone, _):
        pass

    with pytest.raises(CrmUnavailable):
        exchange_code(token_url_for(gone), "id", "secret", "code", REDIRECT_URI)
