"""Shared fixtures: an app on a real database (SQLite per test, or PostgreSQL), a client with CSRF on, factories."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from sqlalchemy.engine import make_url

from portal import create_app
from portal.accounts.models import Account, Membership, MembershipStatus, Role, Source, User
from portal.db import Base, make_engine
from portal.models import load_all

load_all()  # every model on Base.metadata before any schema is built

# Property tests explore freely on a developer's machine and replay the same examples in CI, so a red CI run is a
# finding to fix, never a dice roll (HYPOTHESIS_PROFILE=ci reproduces CI locally).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev"))


def _worker_database(url: str) -> str:
    """Under pytest-xdist each worker process gets a database of its own (`test_gw0`, `test_gw1`, …), created on
    the first run: two workers truncating one database would wipe each other's data mid-test."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    base = make_url(url)
    name = f"{base.database}_{worker}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}) is None:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


PG_URL = _worker_database(os.environ.get("TEST_DATABASE_URL", ""))
# Fixtures that reach the database; a test using one of them (or marked `database`) runs in the PostgreSQL pass.
DATABASE_FIXTURES = {"app", "app_config", "db", "pg_url", "world", "live_server"}
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


_pg_sequences: dict[str, list[str]] = {}


def _pg_reset(engine: sa.Engine) -> None:
    """Empty every table and restart every id sequence. DELETE on the few tables a test filled, found by one probe,
    costs ~3 ms where TRUNCATE of every table took ~150 ms, for each of the ~800 tests of the PostgreSQL pass."""
    tables = Base.metadata.sorted_tables
    with engine.begin() as conn:
        # A connection an earlier test left open inside a transaction (a thread's session, a server that was
        # not shut down) would make the DELETE wait for ever; one test's leftovers must not hang the next.
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
            )
        )
        conn.execute(sa.text("SET LOCAL lock_timeout = '60s'"))
        probe = " UNION ALL ".join(
            f'SELECT {i} FROM (SELECT 1 FROM "{t.name}" LIMIT 1) AS t{i}' for i, t in enumerate(tables)
        )
        filled = {row[0] for row in conn.execute(sa.text(probe))}
        for i, table in reversed(list(enumerate(tables))):  # children before parents
            if i in filled:
                conn.execute(sa.text(f'DELETE FROM "{table.name}"'))
        key = engine.url.render_as_string()
        if key not in _pg_sequences:
            _pg_sequences[key] = list(
                conn.scalars(
                    sa.text(
                        "SELECT quote_ident(sequence_schema) || '.' || quote_ident(sequence_name) "
                        "FROM information_schema.sequences"
                    )
                )
            )
        if _pg_sequences[key]:
            conn.execute(sa.text("SELECT " + ", ".join(f"setval('{q}', 1, false)" for q in _pg_sequences[key])))


_pg_schema_ready = False
_sqlite_template: Path | None = None


def sqlite_database(path: Path) -> str:
    """A SQLite file at `path` holding the whole schema, copied from one built once per process: creating ~40
    tables for every test cost more than most tests themselves."""
    global _sqlite_template
    if _sqlite_template is None:
        template = Path(tempfile.mkdtemp(prefix="portal-schema-")) / "schema.db"
        engine = make_engine(f"sqlite:///{template}")
        Base.metadata.create_all(engine)
        engine.dispose()
        _sqlite_template = template
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


def prepare_schema(engine: sa.Engine) -> None:
    """Bring the app's database to an empty schema: once per process on PostgreSQL, then truncation per test."""
    global _pg_schema_ready
    if engine.dialect.name != "postgresql":
        Base.metadata.create_all(engine)  # a no-op on a copied template; kept for a test's own fresh file
        return
    if not _pg_schema_ready:
        # The whole schema, not just our tables: a database left by another branch's run may hold tables (and
        # foreign keys to ours) that this code has never heard of.
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        Base.metadata.create_all(engine)
        _pg_schema_ready = True
    _pg_reset(engine)


class _SharedBytecode(BytecodeCache):
    """Compiled templates kept for the whole test process: each test builds its own app, and Jinja would otherwise
    parse and compile every template again for each of them."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_BYTECODE = _SharedBytecode()
_create_jinja_environment = Flask.create_jinja_environment


def _jinja_environment_with_shared_bytecode(self: Flask) -> Any:
    env = _create_jinja_environment(self)
    env.bytecode_cache = _BYTECODE
    return env


Flask.create_jinja_environment = _jinja_environment_with_shared_bytecode  # type: ignore[method-assign]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that touch a database; the PostgreSQL pass (`TEST_DATABASE_URL`) runs only those, since the
    rest (pricing, parsers, validators, rendering) does the same on any database and already ran on SQLite."""
    for item in items:
        if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.database)
    if not PG_URL or os.environ.get("PG_PASS_ALL_TESTS") == "1":
        return
    keep = [i for i in items if i.get_closest_marker("database") or i.get_closest_marker("postgres")]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in set(keep)])
        items[:] = keep


@pytest.fixture
def sms() -> RecordingSms:
    return RecordingSms()


@pytest.fixture
def app_config(tmp_path: Any, sms: RecordingSms) -> dict[str, Any]:
    """Settings of the app under test; a test may change them before asking for `app`."""
    return {
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": PG_URL or sqlite_database(tmp_path / "test.db"),
        "SMS_BACKEND_OBJECT": sms,
        "TESTING": True,
        "DOCUMENT_STORE_PATH": str(tmp_path / "documents"),
        "MESSENGER_API_TOKEN": "test-messenger-token",
        "SANDBOX_WEBHOOK_SECRET": "test-webhook-secret",
        "BASE_URL": "http://localhost",
    }


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    application = create_app(app_config)
    prepare_schema(application.extensions["portal.db"].engine)
    # No app context is kept pushed: each request must get its own `g`, as in production.
    yield application
    application.extensions["portal.db"].engine.dispose()


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
            name=name,
            seen_at=user.created_at,
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


@pytest.fixture
def s3_store(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An S3-compatible object store over real HTTP: moto's server on a loopback port, with one empty bucket.
    Yields the settings that point the portal at it."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    settings = {
        "DOCUMENT_STORE_URL": "s3://portal-documents/issued",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": "test-key",
        "S3_SECRET_ACCESS_KEY": "test-secret",
    }
    client = boto3.client(
        "s3",
        endpoint_url=settings["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
    )
    client.create_bucket(Bucket="portal-documents")
    try:
        yield settings
    finally:
        server.stop()
