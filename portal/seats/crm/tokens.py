"""CRM OAuth tokens kept in the database, encrypted, with a row lock around refreshes (several servers share them)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.orm import Session

from .base import CrmAuthError
from .models import CrmConnection
from .oauth import Tokens

SessionFactory = Callable[[], Session]


def token_cipher(secret_key: str) -> Fernet:
    """The key that encrypts CRM tokens at rest, derived from the app's SECRET_KEY for this one purpose."""
    key = hmac.new(secret_key.encode(), b"portal.seats.crm.tokens", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def store_tokens(connection: CrmConnection, tokens: Tokens, cipher: Fernet) -> None:
    """Put a token pair on the connection row (the caller commits)."""
    connection.access_token_enc = cipher.encrypt(tokens.access_token.encode()).decode()
    connection.refresh_token_enc = cipher.encrypt(tokens.refresh_token.encode()).decode()
    connection.token_expires_at = tokens.expires_at


def clear_tokens(connection: CrmConnection) -> None:
    connection.access_token_enc = None
    connection.refresh_token_enc = None
    connection.token_expires_at = None


def read_tokens(connection: CrmConnection, cipher: Fernet) -> Tokens | None:
    return _decrypt(connection.access_token_enc, connection.refresh_token_enc, connection.token_expires_at, cipher)


def _decrypt(
    access_enc: str | None, refresh_enc: str | None, expires_at: datetime | None, cipher: Fernet
) -> Tokens | None:
    if not (access_enc and refresh_enc and expires_at):
        return None
    try:
        access = cipher.decrypt(access_enc.encode()).decode()
        refresh = cipher.decrypt(refresh_enc.encode()).decode()
    except InvalidToken:
        # SECRET_KEY changed since the tokens were stored: they cannot be read, only replaced.
        raise CrmAuthError(
            "Ключи доступа к CRM не читаются (сменился секретный ключ портала): подключите CRM заново"
        ) from None
    return Tokens(access, refresh, expires_at)


class DbTokenStore:
    """The TokenStore of one connection: short transactions of its own, never the caller's.

    A refreshed token pair is committed at once, whatever happens to the sync that needed it, because amoCRM
    refresh tokens are single-use: losing the new pair would disconnect the account. Refreshes are serialised
    across servers by ``locked()`` (SELECT … FOR UPDATE on the connection row; SQLite's write lock locally).
    """

    def __init__(self, session_factory: SessionFactory, connection_id: int, cipher: Fernet) -> None:
        self._session_factory = session_factory
        self._connection_id = connection_id
        self._cipher = cipher
        self._local = threading.local()
        self._decrypted: tuple[tuple[Any, ...], Tokens | None] | None = None  # (stored columns, their tokens)
        # Built once: `get` runs before every request (a 10 000-user CRM is 40 pages a run).
        self._stored_pair = sa.select(
            CrmConnection.access_token_enc, CrmConnection.refresh_token_enc, CrmConnection.token_expires_at
        ).where(CrmConnection.id == connection_id)
        self.saved_count = 0

    def _locked_session(self) -> Session | None:
        return getattr(self._local, "session", None)

    def get(self) -> Tokens | None:
        session = self._locked_session()
        if session is not None:
            return read_tokens(self._row(session, lock=False), self._cipher)
        # Read at every request (another server may have refreshed the pair), as three columns rather than the
        # connection object, and decrypted only when the stored pair is not the one decrypted last time.
        with self._session_factory() as s:
            row = s.execute(self._stored_pair).first()
        if row is None:
            return None
        stored = tuple(row)
        last = self._decrypted
        if last is not None and last[0] == stored:
            return last[1]
        tokens = _decrypt(*stored, self._cipher)
        self._decrypted = (stored, tokens)
        return tokens

    def save(self, tokens: Tokens) -> None:
        session = self._locked_session()
        if session is not None:
            store_tokens(self._row(session, lock=False), tokens, self._cipher)
            session.flush()
        else:
            with self._session_factory() as s:
                store_tokens(self._row(s, lock=True), tokens, self._cipher)
                s.commit()
        self.saved_count += 1

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the connection row for a read–refresh–save, so two servers never spend one refresh token twice."""
        if self._locked_session() is not None:
            yield
            return
        with self._session_factory() as s:
            self._row(s, lock=True)
            self._local.session = s
            try:
                yield
                s.commit()
            except BaseException:
                s.rollback()
                raise
            finally:
                self._local.session = None

    def _row(self, session: Session, *, lock: bool) -> CrmConnection:
        if lock:
            row = lock_connection(session, self._connection_id)
        else:
            row = session.get(CrmConnection, self._connection_id, populate_existing=True)
        if row is None:
            raise CrmAuthError("CRM отключена: подключите её заново")
        return row


def lock_connection(session: Session, connection_id: int) -> CrmConnection | None:
    """The connection row, read afresh and held to the end of the transaction: one sync or token refresh of an
    account at a time (cron on several servers, a button pressed twice). SELECT … FOR UPDATE; SQLite has no row
    locks, so a no-op write takes its single write lock first."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            sa.update(CrmConnection)
            .where(CrmConnection.id == connection_id)
            .values(status=CrmConnection.status)
            .execution_options(synchronize_session=False)
        )
    return session.scalars(
        sa.select(CrmConnection)
        .where(CrmConnection.id == connection_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
