"""How the client behaves when the CRM is slow, down, limited, blocked or answers garbage."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from devtools.crm_emulator import Emulator, running_emulator
from portal.seats.crm import (
    AmoCrmClient,
    CrmBadResponse,
    CrmBlocked,
    CrmUnavailable,
    MemoryTokenStore,
)

from .conftest import FakeClock, RecordingSession


def test_rate_limited_with_a_non_json_body_backs_off_then_succeeds(
    client: AmoCrmClient, emulator: Emulator, clock: FakeClock
) -> None:
    emulator.seed(3)
    emulator.rate_limit_next(2)

    users = client.list_users()

    assert len(users) == 3
    assert [r.status for r in emulator.requests] == [429, 429, 200]
    assert len(clock.sleeps) == 2
    first, second = clock.sleeps
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0, "exponential steps with jitter"


def test_retry_after_header_is_respected(client: AmoCrmClient, emulator: Emulator, clock: FakeClock) -> None:
    emulator.rate_limit_next(1, retry_after=7)

    client.list_groups()

    assert clock.sleeps == [pytest.approx(7.0)]


def test_server_errors_exhaust_the_retries(client: AmoCrmClient, emulator: Emulator, clock: FakeClock) -> None:
    emulator.fail_next(10, 500)

    with pytest.raises(CrmUnavailable) as failure:
        client.list_groups()

    assert failure.value.retryable is True
    assert "HTTP 500" in failure.value.message and "попыток: 6" in failure.value.message
    assert [r.status for r in emulator.requests] == [500] * 6
    assert len(clock.sleeps) == 5
    assert clock.sleeps == sorted(clock.sleeps)


def test_max_retries_is_configurable(make_client: Callable[..., AmoCrmClient], emulator: Emulator) -> None:
    emulator.fail_next(10, 502)

    with pytest.raises(CrmUnavailable):
        make_client(max_retries=1).list_groups()

    assert len(emulator.requests) == 2


def test_crm_down_is_unavailable(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.down = True

    with pytest.raises(CrmUnavailable, match="HTTP 503"):
        client.list_users()


def test_connection_refused_is_unavailable(
    make_client: Callable[..., AmoCrmClient], clock: FakeClock, session: RecordingSession
) -> None:
    with running_emulator() as (gone_url, gone):
        tokens = gone.issue_tokens()
    client = make_client(base_url=gone_url, token_store=MemoryTokenStore(tokens))

    with pytest.raises(CrmUnavailable, match="нет связи с CRM") as refused:
        client.account_info()

    # Shown to the owner on /crm: words, not the Python class name («(ConnectionError)»).
    assert not re.search(r"[A-Z][a-z]+(Error|Exception|Timeout)", str(refused.value)), str(refused.value)
    assert len(session.sent) == 6
    assert len(clock.sleeps) == 5


@pytest.mark.parametrize("how", ["blocked", "forbidden"])
def test_blocked_account(client: AmoCrmClient, emulator: Emulator, how: str) -> None:
    if how == "blocked":
        emulator.blocked = True
    else:
        emulator.fail_next(1, 403)

    with pytest.raises(CrmBlocked) as blocked:
        client.list_users()

    assert str(blocked.value) == "Аккаунт CRM заблокирован или не оплачен"
    assert blocked.value.retryable is False
    assert len(emulator.requests) == 1, "a blocked account is not retried"


def test_broken_json_is_a_bad_response(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.seed(2)
    emulator.malformed_next(1)

    with pytest.raises(CrmBadResponse, match="не удалось разобрать как JSON"):
        client.list_users()

    assert len(emulator.requests) == 1


def test_missing_embedded_is_a_bad_response(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.seed(2)
    emulator.malformed_next(1, shape=True)

    with pytest.raises(CrmBadResponse, match="_embedded"):
        client.list_users()


def test_no_more_than_seven_requests_in_any_second(
    client: AmoCrmClient, emulator: Emulator, clock: FakeClock, session: RecordingSession
) -> None:
    for _ in range(20):
        client.account_info()

    stamps = [t for t, _, _ in session.sent]
    assert len(stamps) == 20
    assert all(stamps[i + 7] - stamps[i] >= 1.0 for i in range(len(stamps) - 7))
    assert stamps[:7] == [stamps[0]] * 7, "the first seven go at once"
    assert stamps[-1] - stamps[0] == pytest.approx(2.0)


def test_pacing_rate_is_configurable(make_client: Callable[..., AmoCrmClient], session: RecordingSession) -> None:
    client = make_client(requests_per_second=2)
    for _ in range(5):
        client.account_info()

    stamps = [t for t, _, _ in session.sent]
    assert all(stamps[i + 2] - stamps[i] >= 1.0 for i in range(len(stamps) - 2))
