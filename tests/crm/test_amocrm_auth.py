"""Access tokens: refresh before expiry, once on 401, failures, and never a token in the logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from devtools.crm_emulator import Emulator
from portal.seats.crm import AmoCrmClient, CrmAuthError, MemoryTokenStore, NewCrmUser
from portal.seats.crm.base import CrmOperationForbidden

from .conftest import CREDENTIALS, RecordingSession


def test_rejected_token_is_refreshed_once_and_the_call_succeeds(
    client: AmoCrmClient, emulator: Emulator, token_store: MemoryTokenStore, session: RecordingSession
) -> None:
    old = token_store.get()
    emulator.revoke_access_tokens()

    groups = client.list_groups()

    assert groups[0].name == "Отдел продаж"
    assert [r.status for r in emulator.requests] == [401, 200]
    assert session.paths() == ["/api/v4/account", "/oauth2/access_token", "/api/v4/account"]
    [saved] = token_store.saved
    assert old is not None and saved.access_token != old.access_token


def test_still_rejected_after_refresh_is_an_auth_error(
    client: AmoCrmClient, emulator: Emulator, token_store: MemoryTokenStore
) -> None:
    emulator.unauthorized_next(2)

    with pytest.raises(CrmAuthError, match="переподключите интеграцию") as failure:
        client.list_users()

    assert failure.value.retryable is False
    assert [r.status for r in emulator.requests] == [401, 401]
    assert len(token_store.saved) == 1


def test_disconnected_integration_is_an_auth_error(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.revoke_tokens()

    with pytest.raises(CrmAuthError) as failure:
        client.list_users()

    assert failure.value.message.startswith("Не удалось обновить доступ к CRM, переподключите интеграцию")
    assert "Токен обновления недействителен или отозван" in failure.value.message


def test_token_is_refreshed_before_it_expires(
    make_client: Callable[..., AmoCrmClient], emulator: Emulator, session: RecordingSession
) -> None:
    tokens = emulator.issue_tokens()
    store = MemoryTokenStore(replace(tokens, expires_at=datetime.now(UTC) + timedelta(seconds=30)))

    make_client(token_store=store).list_groups()

    assert session.paths() == ["/oauth2/access_token", "/api/v4/account"]
    assert [r.status for r in emulator.requests] == [200]
    [saved] = store.saved
    assert saved.expires_at > datetime.now(UTC) + timedelta(hours=23)


def test_token_with_time_left_is_used_as_is(
    make_client: Callable[..., AmoCrmClient], emulator: Emulator, session: RecordingSession
) -> None:
    tokens = emulator.issue_tokens()
    store = MemoryTokenStore(replace(tokens, expires_at=datetime.now(UTC) + timedelta(seconds=120)))

    make_client(token_store=store).list_groups()

    assert session.paths() == ["/api/v4/account"]
    assert store.saved == []


def test_no_tokens_means_not_connected(make_client: Callable[..., AmoCrmClient], emulator: Emulator) -> None:
    with pytest.raises(CrmAuthError, match="CRM не подключена"):
        make_client(token_store=MemoryTokenStore()).list_users()

    assert emulator.requests == []


def test_expired_token_without_credentials_cannot_be_refreshed(
    make_client: Callable[..., AmoCrmClient], emulator: Emulator
) -> None:
    tokens = replace(emulator.issue_tokens(), expires_at=datetime.now(UTC) - timedelta(seconds=1))

    with pytest.raises(CrmAuthError, match="данных интеграции для его обновления нет"):
        make_client(token_store=MemoryTokenStore(tokens), credentials=None).list_users()


def test_tokens_never_reach_the_logs(
    client: AmoCrmClient,
    emulator: Emulator,
    token_store: MemoryTokenStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    first = token_store.get()
    assert first is not None
    emulator.seed(300)
    password = "Very-secret-password-42"

    emulator.revoke_access_tokens()
    users = client.list_users()
    # 300 users: amoCRM refuses to add users through the API above 100, so the password travels in a refused
    # request (and the refusal's own probe of the account) — neither may leak it.
    with pytest.raises(CrmOperationForbidden):
        client.create_users([NewCrmUser("Новый Человек", "new.person@romashka.example", password)])
    client.deactivate_users([users[1].id])
    emulator.rate_limit_next(1)
    client.activate_users([users[1].id])

    secrets_seen = {first.access_token, first.refresh_token, password, CREDENTIALS.client_secret}
    for saved in token_store.saved:
        secrets_seen |= {saved.access_token, saved.refresh_token}
    assert "CRM tokens refreshed" in caplog.text and "GET /api/v4/users?page=2" in caplog.text
    leaked = [s for s in secrets_seen if s in caplog.text]
    assert leaked == []
    assert first.access_token not in repr(first) and first.refresh_token not in repr(first)
