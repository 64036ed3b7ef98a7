"""Builds the CRM client of an account from the settings: amoCRM in production, the local emulator otherwise."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet

from . import oauth
from .amocrm import AmoCrmClient
from .base import CrmError
from .models import CrmConnection
from .oauth import OAuthCredentials, Tokens
from .tokens import DbTokenStore, SessionFactory, token_cipher

BACKENDS = ("emulator", "amocrm")
# The local emulator's integration (devtools.crm_emulator registers it; loopback only, nothing here is a secret).
EMULATOR_CLIENT_ID = "portal-demo"
EMULATOR_CLIENT_SECRET = "portal-demo-secret"
CALLBACK_PATH = "/crm/callback"
# amoCRM sends the account's host as `referer`; only these hosts may receive our client secret and codes.
AMOCRM_HOST_RE = re.compile(r"^(?P<subdomain>[a-z0-9][a-z0-9-]{0,62})\.amocrm\.(?:ru|com)$")


class LockingAmoCrmClient(AmoCrmClient):
    """AmoCrmClient whose token refresh holds the connection row, so servers never spend a refresh token twice."""

    def _refresh(self, stale: Tokens) -> Tokens:
        store = self._token_store
        if isinstance(store, DbTokenStore):
            with store.locked():
                return super()._refresh(stale)
        return super()._refresh(stale)


@dataclass(frozen=True)
class CrmSettings:
    """The CRM part of the app's configuration, read once so services never touch Flask's config."""

    backend: str
    emulator_url: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    secret_key: str = field(repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CrmSettings:
        backend = str(config.get("CRM_BACKEND") or "emulator")
        client_id = str(config.get("AMOCRM_CLIENT_ID") or "")
        client_secret = str(config.get("AMOCRM_CLIENT_SECRET") or "")
        if backend == "emulator":
            client_id = client_id or EMULATOR_CLIENT_ID
            client_secret = client_secret or EMULATOR_CLIENT_SECRET
        redirect_uri = str(config.get("AMOCRM_REDIRECT_URI") or "")
        if not redirect_uri:
            redirect_uri = str(config.get("BASE_URL") or "http://127.0.0.1:5000").rstrip("/") + CALLBACK_PATH
        return cls(
            backend=backend,
            emulator_url=str(config.get("CRM_EMULATOR_URL") or "http://127.0.0.1:5055").rstrip("/"),
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=redirect_uri,
            secret_key=str(config["SECRET_KEY"]),
        )

    @property
    def credentials(self) -> OAuthCredentials:
        return OAuthCredentials(self.client_id, self.client_secret, self.redirect_uri)

    @property
    def cipher(self) -> Fernet:
        return token_cipher(self.secret_key)

    def authorize_url(self, state: str) -> str:
        """Where the owner grants access: amoCRM's own page, or the emulator's /oauth page locally."""
        base = f"{self.emulator_url}/oauth" if self.backend == "emulator" else oauth.AUTHORIZE_URL
        return oauth.authorize_url(self.client_id, state, mode="post_message", base=base)

    def account_base_url(self, referer: str | None) -> tuple[str, str]:
        """(base URL, subdomain) of the CRM account the owner granted, from the callback's `referer`.

        Raises CrmError for a host that is not an amoCRM account: the code and our secret go only there.
        """
        if self.backend == "emulator":
            # The emulator is one account at a known address; its referer is just its own host:port.
            return self.emulator_url, ""
        host = (referer or "").strip().lower()
        match = AMOCRM_HOST_RE.match(host)
        if match is None:
            raise CrmError("CRM вернула неизвестный адрес аккаунта: подключение прервано")
        return f"https://{host}", match.group("subdomain")


def build_client(
    settings: CrmSettings,
    connection: CrmConnection,
    session_factory: SessionFactory,
    *,
    max_retries: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    **options: Any,
) -> AmoCrmClient:
    """The client of one connected account; its tokens live encrypted in the connection row.

    `options` go to AmoCrmClient as they are (tests pass a fake clock and an HTTP session that records).
    """
    store = DbTokenStore(session_factory, connection.id, settings.cipher)
    # The emulator is wherever this process's settings say it is today (`run-demo --port` moves it); the address
    # stored at connection time is only the real amoCRM account's, which never moves.
    base_url = settings.emulator_url if connection.backend == "emulator" else connection.base_url
    return LockingAmoCrmClient(
        base_url,
        store,
        credentials=settings.credentials,
        max_retries=max_retries,
        sleep=sleep,
        **options,
    )


ClientFactory = Callable[[CrmConnection], AmoCrmClient]


def client_factory(settings: CrmSettings, session_factory: SessionFactory, *, max_retries: int = 5) -> ClientFactory:
    """A factory for deliver_outbox and the cron sync: one client per connection."""

    def make(connection: CrmConnection) -> AmoCrmClient:
        return build_client(settings, connection, session_factory, max_retries=max_retries)

    return make
