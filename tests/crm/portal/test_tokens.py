"""Tokens in the database: encrypted at rest, refreshed before expiry and on 401, one refresh across threads."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from devtools.crm_emulator import Emulator, running_emulator
from portal.seats.crm.base import CrmAuthError
from portal.seats.crm.factory import build_client
from portal.seats.crm.models import CrmConnection
from portal.seats.crm.tokens import read_tokens, token_cipher
from tests.crm.portal.conftest import NOW, Crm, connect


def stored(crm: Crm) -> Any:
    return read_tokens(crm.connection(), crm.settings.cipher)


def test_tokens_are_encrypted_at_rest(crm: Crm) -> None:
    row = crm.connection()
    tokens = stored(crm)

    assert tokens.access_token not in row.access_token_enc
    assert tokens.refresh_token not in row.refresh_token_enc
    assert token_cipher("another-secret").encrypt(b"x") != row.access_token_enc
    with pytest.raises(CrmAuthError, match="подключите CRM заново"):
        read_tokens(row, token_cipher("another-secret"))
    assert "access" not in repr(row) and tokens.access_token not in repr(tokens)


@pytest.fixture
def clock_crm(crm_app_config: dict[str, Any], app: Any, db: Any, make_account: Any) -> Any:
    """An emulator whose time the test moves, so access tokens can expire."""
    now = [time.time()]
    emulator = Emulator(token_ttl=3600, now=lambda: now[0])
    with running_emulator(emulator) as (url, emu):
        app.config["CRM_EMULATOR_URL"] = url
        account = make_account(name="ООО «Ромашка»")
        connect(app, db, account, emu, url)
        emu.seed(3, seed=1)
        yield Crm(app, db, account, emu, url), now


def test_an_expired_access_token_is_refreshed_on_401_and_saved(clock_crm: Any, caplog: Any) -> None:
    crm, now = clock_crm
    caplog.set_level(logging.DEBUG)
    before = stored(crm)
    now[0] += 7200  # the CRM's clock: our token is dead, though our own clock does not know it yet

    result = crm.sync()

    after = stored(crm)
    assert result.ok and result.counts["departments_created"] == 4
    assert after.access_token != before.access_token and after.refresh_token != before.refresh_token
    # amoCRM refresh tokens are single-use: the old one no longer works, the saved one does.
    statuses = [r.status for r in crm.api_requests()]
    assert statuses[:2] == [401, 200]
    assert "CRM tokens refreshed" in caplog.text
    for secret in (before.access_token, before.refresh_token, after.access_token, after.refresh_token):
        assert secret not in caplog.text


def test_a_token_about_to_expire_is_refreshed_before_use(clock_crm: Any) -> None:
    crm, _now = clock_crm
    before = stored(crm)
    later = before.expires_at - timedelta(seconds=30)

    result = _sync_at(crm, later)

    assert result.ok
    assert stored(crm).access_token != before.access_token
    assert [r.status for r in crm.api_requests()][0] == 200  # no 401 was needed


def _sync_at(crm: Crm, moment: datetime) -> Any:
    from portal.seats.crm.sync import sync_account

    with crm.sessionmaker() as session:
        return sync_account(session, crm.account.id, crm.client(now=lambda: moment), NOW)


def test_two_threads_with_a_stale_token_refresh_it_once(clock_crm: Any) -> None:
    crm, now = clock_crm
    now[0] += 7200
    stores = []
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    connection = crm.connection()

    def work() -> None:
        client = build_client(crm.settings, connection, crm.sessionmaker)
        stores.append(client._token_store)
        barrier.wait()
        try:
            client.list_groups()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    # The second thread found the first one's fresh pair under the row lock instead of spending the
    # (single-use) refresh token again, which the CRM would have refused.
    assert sum(s.saved_count for s in stores) == 1


def test_disconnected_tokens_stop_the_client_with_a_clear_message(crm: Crm) -> None:
    client = crm.client()
    row = crm.db.scalars(sa.select(CrmConnection)).one()
    row.access_token_enc = row.refresh_token_enc = None
    crm.db.commit()

    with pytest.raises(CrmAuthError, match="Подключите интеграцию"):
        client.list_groups()


def test_expiry_is_stored_as_an_aware_instant(crm: Crm) -> None:
    assert stored(crm).expires_at.tzinfo is not None
    assert stored(crm).expires_at > datetime(2000, 1, 1, tzinfo=UTC)


def test_a_server_holding_a_stale_pair_takes_the_fresh_one_instead_of_refreshing_again(clock_crm: Any) -> None:
    crm, _now = clock_crm
    stale = stored(crm)
    first = build_client(crm.settings, crm.connection(), crm.sessionmaker)
    second = build_client(crm.settings, crm.connection(), crm.sessionmaker)

    fresh = first._refresh(stale)
    again = second._refresh(stale)  # the other server saw a 401 with the same old token

    assert again == fresh and stored(crm) == fresh
    assert second._token_store.saved_count == 0
    assert len(second.list_groups()) == 4
