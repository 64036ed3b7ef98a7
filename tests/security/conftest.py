"""Fixtures for the security tests: one populated portal per module, sessions of every role, state snapshots."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from tests.conftest import RecordingSms
from tests.security.world import World, build_world


def stub_renderers(monkeypatch: Any) -> None:
    """Access rules are about who gets which bytes, not about layout: WeasyPrint is replaced by stubs."""
    from portal.documents import render

    monkeypatch.setattr(render, "render_invoice_pdf", lambda ctx: f"%PDF-1.7 invoice {ctx['number']}".encode())
    monkeypatch.setattr(render, "render_upd_pdf", lambda ctx: f"%PDF-1.7 upd {ctx['number']}".encode())


def test_config(tmp: Path, sms: RecordingSms) -> dict[str, Any]:
    from tests.conftest import PG_URL, sqlite_database

    return {
        "INSTANCE_PATH": str(tmp / "instance"),
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": PG_URL or sqlite_database(tmp / "test.db"),
        "SMS_BACKEND_OBJECT": sms,
        "TESTING": True,
        "DOCUMENT_STORE_PATH": str(tmp / "documents"),
        "MESSENGER_API_TOKEN": "test-messenger-token",
        "SANDBOX_WEBHOOK_SECRET": "test-webhook-secret",
        "BASE_URL": "http://localhost",
        # Port 9 (discard) on loopback refuses connections: a CRM that is down, never somebody's running emulator.
        "CRM_EMULATOR_URL": "http://127.0.0.1:9",
        "CRM_OUTBOX_DELIVERY": "off",
    }


def make_app(config: dict[str, Any]) -> Flask:
    """The app on a fresh schema, exactly as the shared `app` fixture makes it (SQLite file or PostgreSQL)."""
    from portal import create_app
    from tests.conftest import prepare_schema

    application = create_app(config)
    prepare_schema(application.extensions["portal.db"].engine)
    return application


@pytest.fixture(scope="module")
def module_sms() -> RecordingSms:
    return RecordingSms()


@pytest.fixture(scope="module")
def world(tmp_path_factory: Any, module_sms: RecordingSms) -> Iterator[World]:
    """One populated portal for a whole module (its GET checks change nothing, so they can share it)."""
    mp = pytest.MonkeyPatch()
    stub_renderers(mp)
    application = make_app(test_config(tmp_path_factory.mktemp("world"), module_sms))
    # Many sign-ins from one address in a few seconds: the limits are tested on their own elsewhere.
    application.config["RATELIMIT_ENABLED"] = False
    from portal.extensions import limiter

    limiter.enabled = False
    session = application.extensions["portal.db"].sessionmaker()
    try:
        built = build_world(application, session)
        # End the session's read transaction: on PostgreSQL it would hold locks that make every later
        # test's TRUNCATE wait (the objects stay readable: expire_on_commit is off).
        session.commit()
        yield built
    finally:
        limiter.enabled = True
        session.close()
        application.extensions["portal.db"].engine.dispose()
        mp.undo()


# Tables whose rows are the portal's state; sessions, counters of sign-in attempts and notification logs are not.
VOLATILE = {"sms_codes", "login_attempts", "payment_notifications", "user_sessions"}


def snapshot(app: Flask) -> dict[str, str]:
    """A hash of every table's rows, to prove a request changed nothing."""
    from portal.db import Base

    out: dict[str, str] = {}
    engine = app.extensions["portal.db"].engine
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in VOLATILE:
                continue
            order = [c for c in table.primary_key.columns] or list(table.columns)
            rows = conn.execute(sa.select(table).order_by(*order)).all()
            digest = hashlib.sha256(json.dumps([list(r) for r in rows], default=str).encode()).hexdigest()
            out[table.name] = f"{len(rows)}:{digest[:16]}"
    return out


def changed_tables(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {t: (before[t], after.get(t, "")) for t in before if before[t] != after.get(t)}
