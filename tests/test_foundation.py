"""The app factory, configuration, production refusals, migrations, demo data, headers and error pages."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from devtools.demo import cli as demo_cli
from portal import create_app
from portal.accounts.models import Account, Membership, User
from portal.cli import upgrade_database
from portal.config import ConfigError, load_config
from portal.db import Base, include_in_autogenerate
from portal.models import load_all
from tests.conftest import PG_URL


def test_local_secret_is_generated_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = load_config(str(tmp_path))["SECRET_KEY"]
    second = load_config(str(tmp_path))["SECRET_KEY"]
    assert first == second and len(first) == 64
    assert (tmp_path / "secret_key").read_text() == first


def test_default_database_is_sqlite_in_instance(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    cfg = load_config(str(tmp_path))
    assert cfg["DATABASE_URL"] == f"sqlite:///{tmp_path / 'portal.db'}"


# Secrets as `secrets.token_urlsafe(32)` and `secrets.token_hex(32)` make them.
STRONG_KEY = "q3Vf0Zr8mXo1T6bKpW2yLcN9sHdG4uJeA7iR5tYvB0w"
STRONG_TOKEN = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
GOOD_PRODUCTION = {
    "PORTAL_ENV": "production",
    "SECRET_KEY": STRONG_KEY,
    "DATABASE_URL": "postgresql+psycopg://u@db/portal",
    "SMS_BACKEND": "http",
    "SMS_API_KEY": "k",
    "PAYMENT_PROVIDER": "yookassa",
    "YOOKASSA_SHOP_ID": "1",
    "YOOKASSA_SECRET_KEY": "k",
    "CRM_BACKEND": "amocrm",
    "EDO_BACKEND": "off",
    "MESSENGER_API_TOKEN": STRONG_TOKEN,
    "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0",
    "TASK_QUEUE_URL": "redis://127.0.0.1:6379/9",
    "BASE_URL": "https://portal.example.ru",
    "PROXY_FIX_HOPS": 1,
}


@pytest.mark.parametrize(
    "missing, words",
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"DATABASE_URL": "sqlite:///x.db"}, "DATABASE_URL"),
        ({"SMS_BACKEND": "console"}, "SMS_BACKEND"),
        ({"PAYMENT_PROVIDER": "sandbox"}, "PAYMENT_PROVIDER"),
        ({"CRM_BACKEND": "emulator"}, "CRM_BACKEND"),
        # The attack: `SECRET_KEY=a` started, and a cookie forged with it opened /support as staff.
        ({"SECRET_KEY": "a"}, "SECRET_KEY is shorter than 32 random bytes"),
        ({"SECRET_KEY": "s" * 64}, "SECRET_KEY is shorter than 32 random bytes"),
        ({"SECRET_KEY": STRONG_TOKEN[:63]}, "SECRET_KEY is shorter than 32 random bytes"),  # hex: 64 digits
        ({"SECRET_KEY": STRONG_KEY[:42]}, "SECRET_KEY is shorter than 32 random bytes"),
        ({"MESSENGER_API_TOKEN": "t"}, "MESSENGER_API_TOKEN is shorter than 32 random bytes"),
        ({"MESSENGER_API_TOKEN": "token-of-the-messenger"}, "MESSENGER_API_TOKEN is shorter"),
        # Under `gunicorn -w 2` each worker counted for itself: 6 codes to one phone with a limit of 3.
        ({"RATELIMIT_STORAGE_URI": "memory://"}, "RATELIMIT_STORAGE_URI=memory://"),
        ({"PROXY_FIX_HOPS": 0}, "set PROXY_FIX_HOPS to the number of reverse proxies"),
        # A queue in one server's SQLite file: a worker on another server would never see its tasks.
        ({"TASK_QUEUE_URL": "sqlite:///tmp/tasks.db"}, "TASK_QUEUE_URL must point at Redis"),
        ({"DOCUMENT_STORE_URL": "s3://docs/portal"}, "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are required"),
    ],
)
def test_production_refuses_local_only_defaults(tmp_path, missing, words):
    good = dict(GOOD_PRODUCTION)
    load_config(str(tmp_path), good)  # the complete production setup starts
    with pytest.raises(ConfigError, match=words):
        load_config(str(tmp_path), {**good, **missing})


@pytest.mark.database
def test_migrations_and_models_agree(tmp_path):
    """`db upgrade` on an empty database gives exactly the schema the models describe."""
    if PG_URL:
        url = _fresh_pg_database("portal_migrations_check")
    else:
        url = f"sqlite:///{tmp_path / 'migrated.db'}"
    upgrade_database(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        # The same filter as `flask db migrate`: an index the models create on PostgreSQL only (ddl_if) is not
        # expected on SQLite.
        opts = {"compare_type": True, "include_object": include_in_autogenerate(conn.dialect.name)}
        ctx = MigrationContext.configure(conn, opts=opts)
        diff = compare_metadata(ctx, load_all().metadata)
    engine.dispose()
    assert diff == []


def _fresh_pg_database(name: str) -> str:
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_URL.rsplit("/", 1)[0] + "/" + name


def test_seed_demo_is_idempotent_and_over_the_free_limit(app, db):
    demo_cli.init_app(app)  # as wsgi.py does in a checkout: the demo's commands are development tools
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["seed-demo"])
        assert result.exit_code == 0, result.output
    owner = db.scalars(sa.select(User).where(User.phone == "+79990000001")).one()
    big = db.scalars(
        sa.select(Account).join(Membership).where(Membership.user_id == owner.id, Membership.role == "owner")
    ).one()
    active = db.scalar(
        sa.select(sa.func.count())
        .select_from(Membership)
        .where(Membership.account_id == big.id, Membership.status == "active")
    )
    assert active == 9  # owner + accountant + 7 members: over the free plan's 5
    assert db.scalar(sa.select(sa.func.count()).select_from(Account)) == 2
    staff = db.scalars(sa.select(User).where(User.phone == "+79990000099")).one()
    assert staff.is_staff


def test_security_headers_and_cookie_flags(client, app):
    resp = client.get("/login")
    csp = resp.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"]
    cookie = resp.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_production_accepts_what_holds(tmp_path):
    """Strong secrets in either spelling; no proxy acknowledged explicitly; a local https address needs no proxy."""
    for change in (
        {"SECRET_KEY": STRONG_TOKEN, "MESSENGER_API_TOKEN": STRONG_KEY},
        {"PROXY_FIX_HOPS": 0, "NO_REVERSE_PROXY": True},
        {"PROXY_FIX_HOPS": 0, "BASE_URL": "https://127.0.0.1:8443"},
        {"PROXY_FIX_HOPS": 0, "BASE_URL": "http://10.0.0.5:8000"},
    ):
        load_config(str(tmp_path), {**GOOD_PRODUCTION, **change})


def test_production_names_every_problem_at_once(tmp_path):
    weak = {**GOOD_PRODUCTION, "SECRET_KEY": "a", "RATELIMIT_STORAGE_URI": "memory://", "PROXY_FIX_HOPS": 0}
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path), weak)
    text = str(info.value)
    assert "SECRET_KEY" in text and "memory://" in text and "NO_REVERSE_PROXY=true" in text


def test_production_cookies_are_secure(tmp_path):
    cfg = load_config(str(tmp_path), dict(GOOD_PRODUCTION))
    assert cfg["SESSION_COOKIE_SECURE"] is True and cfg["REMEMBER_COOKIE_SECURE"] is True


def test_error_pages_are_russian_and_styled(client):
    resp = client.get("/no-such-page")
    assert resp.status_code == 404
    body = resp.get_data(as_text=True)
    assert "Страница не найдена" in body and "portal.css" in body


def test_wsgi_exposes_app(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    import importlib

    import wsgi

    importlib.reload(wsgi)
    assert wsgi.app.name == "portal"
    assert Base.metadata.tables  # models registered
    assert create_app({"INSTANCE_PATH": str(tmp_path / "i"), "SECRET_KEY": "x"}).config["SECRET_KEY"] == "x"
    assert os.environ["DATABASE_URL"].startswith("sqlite")


@pytest.mark.database
def test_migration_0008_gives_each_company_its_own_copy_of_every_name_and_email(tmp_path):
    """Issue #14: names and e-mails move from the person to each company's record without losing any."""
    if PG_URL:
        url = _fresh_pg_database("portal_migration_0008")
    else:
        url = f"sqlite:///{tmp_path / 'm0008.db'}"
    upgrade_database(url, "0007")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO accounts (id, name, created_at, storage_used_bytes) VALUES (1, 'А', :t, 0)"),
            {"t": "2026-01-01 00:00:00+00:00"},
        )
        conn.execute(
            sa.text("INSERT INTO accounts (id, name, created_at, storage_used_bytes) VALUES (2, 'Б', :t, 0)"),
            {"t": "2026-01-01 00:00:00+00:00"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO users (id, phone, name, email, is_staff, created_at) VALUES "
                "(1, '+79990000001', 'Анна Смирнова', 'anna@example.ru', false, :t), "
                "(2, '+79990000002', 'Борис', NULL, false, :t)"
            ),
            {"t": "2026-01-01 00:00:00+00:00"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO memberships (id, account_id, user_id, role, status, source, created_at, updated_at) VALUES "
                "(1, 1, 1, 'owner', 'active', 'portal', :t, :t), (2, 2, 1, 'member', 'active', 'portal', :t, :t), "
                "(3, 1, 2, 'member', 'deactivated', 'crm', :t, :t)"
            ),
            {"t": "2026-01-01 00:00:00+00:00"},
        )
    engine.dispose()
    upgrade_database(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, name, email, seen_at IS NOT NULL FROM memberships ORDER BY id")).all()
        users = conn.execute(sa.text("SELECT name, email FROM users ORDER BY id")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        (1, "Анна Смирнова", "anna@example.ru", True),
        (2, "Анна Смирнова", "anna@example.ru", True),
        (3, "Борис", None, True),
    ]
    assert [tuple(u) for u in users] == [("Анна Смирнова", "anna@example.ru"), ("Борис", None)]
