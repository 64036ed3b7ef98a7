"""OAuth 2.0 authorization code flow for amoCRM integrations: authorize URL, code exchange, refresh."""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

import requests

from .base import CrmAuthError, CrmBadResponse, CrmUnavailable

log = logging.getLogger(__name__)

AUTHORIZE_URL = "https://www.amocrm.ru/oauth"
TOKEN_PATH = "/oauth2/access_token"
DEFAULT_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Tokens:
    # repr=False keeps tokens out of logs and tracebacks that print the object.
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime

    def __post_init__(self) -> None:
        if self.expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")

    def expires_within(self, seconds: float, now: datetime) -> bool:
        return self.expires_at - now <= timedelta(seconds=seconds)

    def to_dict(self) -> dict[str, str]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at.astimezone(UTC).isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tokens:
        return cls(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
            expires_at=datetime.fromisoformat(str(data["expires_at"])),
        )


class TokenStore(Protocol):
    """Where an account's tokens live (the portal keeps them in its database, encrypted)."""

    def get(self) -> Tokens | None: ...

    def save(self, tokens: Tokens) -> None: ...


class MemoryTokenStore:
    """A TokenStore for tests and scripts."""

    def __init__(self, tokens: Tokens | None = None) -> None:
        self._tokens = tokens
        self._lock = threading.Lock()
        self.saved: list[Tokens] = []

    def get(self) -> Tokens | None:
        with self._lock:
            return self._tokens

    def save(self, tokens: Tokens) -> None:
        with self._lock:
            self._tokens = tokens
            self.saved.append(tokens)


@dataclass(frozen=True, slots=True)
class OAuthCredentials:
    """The integration's identity, as registered in the CRM; needed to refresh tokens."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str


def token_url_for(base_url: str) -> str:
    """The token endpoint of an account: https://<subdomain>.amocrm.ru/oauth2/access_token."""
    return base_url.rstrip("/") + TOKEN_PATH


def authorize_url(
    client_id: str,
    state: str,
    mode: Literal["post_message", "popup"] = "post_message",
    base: str = AUTHORIZE_URL,
) -> str:
    """Where to send the account owner so they grant the integration access to their CRM."""
    if mode not in ("post_message", "popup"):
        raise ValueError(f"unknown mode {mode!r}")
    return f"{base}?{urlencode({'client_id': client_id, 'state': state, 'mode': mode})}"


def new_state() -> str:
    """An unguessable value that ties the CRM's redirect back to the session that started it."""
    return secrets.token_urlsafe(32)


def check_state(expected: str | None, got: str | None) -> bool:
    if not expected or not got:
        return False
    return hmac.compare_digest(expected.encode(), got.encode())


def exchange_code(
    token_url: str, client_id: str, client_secret: str, code: str, redirect_uri: str, **http: Any
) -> Tokens:
    """Trade the one-time authorization code from the redirect for access and refresh tokens.

    `http`: `session`, `now` and `timeout`, as `_token_request` takes them (likewise for `refresh`)."""
    return _token_request(
        token_url,
        _grant(client_id, client_secret, redirect_uri, grant_type="authorization_code", code=code),
        failure="Не удалось подключить CRM: код авторизации не принят",
        **http,
    )


def refresh(
    token_url: str, client_id: str, client_secret: str, refresh_token: str, redirect_uri: str, **http: Any
) -> Tokens:
    """Get a new token pair; amoCRM refresh tokens are single-use, so the caller must save the result."""
    return _token_request(
        token_url,
        _grant(client_id, client_secret, redirect_uri, grant_type="refresh_token", refresh_token=refresh_token),
        failure="Не удалось обновить доступ к CRM, переподключите интеграцию",
        **http,
    )


def _grant(client_id: str, client_secret: str, redirect_uri: str, **grant: str) -> dict[str, str]:
    """The form of a token request: the integration's credentials around the grant (its type and its code)."""
    return {"client_id": client_id, "client_secret": client_secret, **grant, "redirect_uri": redirect_uri}


def _token_request(
    token_url: str,
    body: dict[str, str],
    *,
    failure: str,
    session: requests.Session | None = None,
    now: datetime | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Tokens:
    http = session or requests.Session()
    grant = body["grant_type"]
    try:
        response = http.request("POST", token_url, json=body, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        log.warning("CRM token request (%s) failed: %s", grant, type(exc).__name__)
        raise CrmUnavailable("Сервер авторизации CRM не ответил, попробуем ещё раз") from exc
    finally:
        if session is None:
            http.close()
    log.info("CRM token request (%s) -> %s", grant, response.status_code)
    if response.status_code >= 500 or response.status_code == 429:
        raise CrmUnavailable(f"Сервер авторизации CRM временно недоступен (HTTP {response.status_code})")
    if response.status_code != 200:
        reason = _problem_text(response)
        raise CrmAuthError(f"{failure}: {reason}" if reason else failure, detail=reason)
    try:
        data = response.json()
        access, refresh_, expires_in = data["access_token"], data["refresh_token"], data["expires_in"]
        if not (isinstance(access, str) and isinstance(refresh_, str) and access and refresh_):
            raise TypeError("tokens must be non-empty strings")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
            raise TypeError("expires_in must be a number")
    except (ValueError, KeyError, TypeError) as exc:
        raise CrmBadResponse("Сервер авторизации CRM вернул ответ неожиданного вида") from exc
    issued = now or datetime.now(UTC)
    return Tokens(access, refresh_, issued + timedelta(seconds=float(expires_in)))


def _problem_text(response: requests.Response) -> str:
    """The human part of an amoCRM problem+json error (hint/detail/title), never the request echo."""
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if not isinstance(data, dict):
        return f"HTTP {response.status_code}"
    parts = [str(data[key]) for key in ("title", "detail", "hint") if data.get(key)]
    return ". ".join(parts) or f"HTTP {response.status_code}"
