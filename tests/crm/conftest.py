"""Fixtures for the CRM adapter tests: a live emulator on a loopback port and clients with a fake clock."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from devtools.crm_emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator, running_emulator
from portal.seats.crm import AmoCrmClient, MemoryTokenStore, OAuthCredentials

REDIRECT_URI = "https://portal.example/crm/callback"
CREDENTIALS = OAuthCredentials(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, REDIRECT_URI)


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps, so pacing is exact and instant."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingSession(requests.Session):
    """A real HTTP session that notes when (on the fake clock) and where each request went."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.sent: list[tuple[float, str, str]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append((self.clock(), str(method), str(url)))
        return super().request(method, url, *args, **kwargs)

    def paths(self) -> list[str]:
        return [requests.utils.urlparse(url).path for _, _, url in self.sent]


@pytest.fixture
def served() -> Iterator[tuple[str, Emulator]]:
    with running_emulator() as pair:
        yield pair


@pytest.fixture
def crm_url(served: tuple[str, Emulator]) -> str:
    return served[0]


@pytest.fixture
def emulator(served: tuple[str, Emulator]) -> Emulator:
    return served[1]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The pacing's moving window (the `limits` package) stamps requests with time.time(): it reads this clock."""
    import types

    import limits.storage.memory

    fake = FakeClock()
    monkeypatch.setattr(limits.storage.memory, "time", types.SimpleNamespace(time=fake))
    return fake


@pytest.fixture
def token_store(emulator: Emulator) -> MemoryTokenStore:
    return MemoryTokenStore(emulator.issue_tokens())


@pytest.fixture
def session(clock: FakeClock) -> Iterator[RecordingSession]:
    with RecordingSession(clock) as s:
        yield s


@pytest.fixture
def make_client(
    crm_url: str, token_store: MemoryTokenStore, clock: FakeClock, session: RecordingSession
) -> Callable[..., AmoCrmClient]:
    def make(**overrides: Any) -> AmoCrmClient:
        options: dict[str, Any] = {
            "credentials": CREDENTIALS,
            "session": session,
            "sleep": clock.sleep,
            "clock": clock,
            "rng": random.Random(0),
        }
        options.update(overrides)
        base_url = options.pop("base_url", crm_url)
        store = options.pop("token_store", token_store)
        return AmoCrmClient(base_url, store, **options)

    return make


@pytest.fixture
def client(make_client: Callable[..., AmoCrmClient]) -> AmoCrmClient:
    return make_client()
