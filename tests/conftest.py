"""Shared fixtures: an app on a real database (SQLite per test, or PostgreSQL), a client with CSRF on, factories."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal import create_app
from portal.accounts.models import Account, Membership, MembershipStatus, Role, Source, User
from portal.db import Base
from portal.models import load_all

PG_URL = os.environ.get("TEST_DATABASE_URL", "")
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@dataclass
class RecordingSms:
    """An SMS backend that keeps what it sent, so tests read codes like a person reads their phone."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    def send(self, phone: str, text: str) -> None:
        self.messages.append((phone, text))

    def last_code(self, phone: str) -> str:
        for to, text in reversed(self.messages):
            if to == phone:
                return re.search(r"\b(\d{6})\b", text).group(1)  # type: ignore[union-attr]
        raise AssertionError(f"no SMS to {phone}")


def _pg_reset(engine: sa.Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        # A connection an earlier test left open inside a transaction (a thread's session, a server that was
        # not shut down) would make TRUNCATE wait for ever; one test's leftovers must not hang the next.
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
            )
        )
        conn.execute(sa.text("SET LOCAL lock_timeout = '60s'"))
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


_pg_schema_ready = False


@pytest.fixture
def sms() -> RecordingSms:
    return RecordingSms()


@pytest.fixture
def app_config(tmp_path: Any, sms: RecordingSms) -> dict[str, Any]:
    """Settings of the app under test; a test may change them before asking for `app`."""
    return {
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": PG_URL or f"sqlite:///{tmp_path / 'test.db'}",
        "SMS_BACKEND_OBJECT": sms,
        "TESTING": True,
        "DOCUMENT_STORE_PATH": str(tmp_path / "documents"),
        "MESSENGER_API_TOKEN": "test-messenger-token",
        "SANDBOX_WEBHOOK_SECRET": "test-webhook-secret",
        "BASE_URL": "http://localhost",
    }


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    global _pg_schema_ready
    application = create_app(app_config)
    load_all()
    engine = application.extensions["portal.db"].engine
    if PG_URL:
        if not _pg_schema_ready:
            Base.metadata.drop_all(engine)
            Base.metadata.create_all(engine)
            _pg_schema_ready = True
        _pg_reset(engine)
    else:
        Base.metadata.create_all(engine)
    # No app context is kept pushed: each request must get its own `g`, as in production.
    yield application
    engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def db(app: Flask) -> Iterator[Any]:
    """A session of the test's own, outside any request (like a second person looking at the database)."""
    session = app.extensions["portal.db"].sessionmaker()
    yield session
    session.close()


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    """The CSRF token of the client's session, read from a page as a browser would."""
    resp = client.get(path, follow_redirects=True)
    m = CSRF_RE.search(resp.get_data(as_text=True))
    assert m, f"no csrf token on {path}"
    return m.group(1)


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    """POST a form with the session's CSRF token, as the browser does after loading a page."""
    payload = dict(data or {})
    payload.setdefault("csrf_token", csrf_token(client))
    return client.post(path, data=payload, **kw)


@dataclass
class Auth:
    client: FlaskClient
    sms: RecordingSms

    def login(self, phone: str) -> Any:
        resp = post(self.client, "/login", {"phone": phone})
        assert resp.status_code == 302, resp.get_data(as_text=True)
        code = self.sms.last_code(phone)
        return post(self.client, "/login/code", {"code": code})

    def logout(self) -> Any:
        return post(self.client, "/logout")


@pytest.fixture
def auth(client: FlaskClient, sms: RecordingSms) -> Auth:
    return Auth(client, sms)


@pytest.fixture
def make_account(db: Any) -> Callable[..., Account]:
    """Factory: an account with an owner and `members` more active members."""
    counter = {"n": 0}

    def factory(
        name: str = "ООО «Тест»",
        owner_phone: str | None = None,
        members: int = 0,
        accountant_phone: str | None = None,
    ) -> Account:
        counter["n"] += 1
        n = counter["n"]
        account = Account(name=name)
        db.add(account)
        db.flush()
        owner_phone = owner_phone or f"+7916{n:03d}0000"
        _add_member(db, account, owner_phone, f"Владелец {n}", Role.OWNER)
        if accountant_phone:
            _add_member(db, account, accountant_phone, f"Бухгалтер {n}", Role.ACCOUNTANT)
        for i in range(members):
            _add_member(db, account, f"+7916{n:03d}{i + 1:04d}", f"Сотрудник {n}-{i + 1}", Role.MEMBER)
        db.commit()
        return account

    return factory


def _add_member(db: Any, account: Account, phone: str, name: str, role: Role) -> User:
    user = db.scalars(sa.select(User).where(User.phone == phone)).first()
    if user is None:
        user = User(phone=phone, name=name)
        db.add(user)
        db.flush()
    db.add(
        Membership(
            account_id=account.id,
            user_id=user.id,
            role=role.value,
            status=MembershipStatus.ACTIVE.value,
            source=Source.PORTAL.value,
        )
    )
    db.flush()
    return user


@pytest.fixture
def add_member(db: Any) -> Callable[..., User]:
    def factory(account: Account, phone: str, name: str = "Сотрудник", role: Role = Role.MEMBER) -> User:
        user = _add_member(db, account, phone, name, role)
        db.commit()
        return user

    return factory


@pytest.fixture
def pg_url() -> str:
    """For tests that only make sense on PostgreSQL (row locks, concurrency)."""
    if not PG_URL:
        # CI runs the suite twice; the SQLite pass says the PostgreSQL pass follows, so these skip only there.
        if os.environ.get("CI") == "true" and os.environ.get("POSTGRES_PASS_FOLLOWS") != "1":
            pytest.fail("TEST_DATABASE_URL is required under CI=true")
        pytest.skip("PostgreSQL test: set TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test")
    return PG_URL
