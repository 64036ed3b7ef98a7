"""Response headers on every page (and on error pages and JSON), and the session cookie's flags."""

from __future__ import annotations

import re
import tempfile
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import PG_URL, RecordingSms
from tests.security.matrix import methods, url
from tests.security.world import World

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
STYLE_ATTR = re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I)
EVENT_ATTR = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)


def csp_directives(value: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def assert_safe_headers(resp: Any, where: str) -> None:
    headers = resp.headers
    csp = csp_directives(headers.get("Content-Security-Policy", ""))
    scripts = csp.get("script-src", csp.get("default-src"))
    assert scripts, f"{where}: no script-src or default-src"
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, where
    assert "*" not in scripts and "data:" not in scripts, where
    assert csp.get("frame-ancestors") == ["'none'"], where
    assert csp.get("object-src") == ["'none'"], where
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") in ("strict-origin-when-cross-origin", "no-referrer", "same-origin"), where


@pytest.fixture(scope="module")
def people(world: World, module_sms: RecordingSms) -> dict[str, FlaskClient]:
    return {role: world.client_as(role, module_sms) for role in ("visitor", "member", "accountant", "owner", "staff")}


def test_every_page_for_everyone_has_the_security_headers_and_needs_no_inline_code(
    world: World, people: dict[str, FlaskClient]
) -> None:
    pages = 0
    for rule in world.app.url_map.iter_rules():
        if "GET" not in methods(rule):
            continue
        path = url(rule, world)
        for role, client in people.items():
            resp = client.get(path)
            where = f"{role} GET {path} ({resp.status_code})"
            assert_safe_headers(resp, where)
            if resp.mimetype == "text/html":
                html = resp.get_data(as_text=True)
                # The CSP would block these, so a page that has them is broken in the browser.
                assert INLINE_SCRIPT.findall(html) == [], where
                assert STYLE_ATTR.findall(html) == [], where
                assert EVENT_ATTR.findall(html) == [], where
            resp.close()
            pages += 1
    assert pages > 200


def test_error_pages_json_and_files_have_them_too(world: World, people: dict[str, FlaskClient]) -> None:
    visitor = people["visitor"]
    for path in ("/no-such-page", "/api/v1/quote?plan=nope&months=6", "/api/v1/plans", "/static/css/portal.css"):
        resp = visitor.get(path)
        assert_safe_headers(resp, path)
        resp.close()
    resp = people["accountant"].get(f"/documents/invoices/{world.own.ids['invoice_id']}/pdf")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    assert_safe_headers(resp, "invoice PDF")


def _set_cookie(resp: Any, name: str) -> str:
    for header in resp.headers.getlist("Set-Cookie"):
        if header.startswith(f"{name}="):
            return header
    raise AssertionError(f"no {name} cookie in {resp.headers.getlist('Set-Cookie')}")


def test_the_session_cookie_is_httponly_and_samesite_locally(client: FlaskClient) -> None:
    cookie = _set_cookie(client.get("/login"), "session")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # the local demo runs on plain http://127.0.0.1


PRODUCTION = {
    "PORTAL_ENV": "production",
    "SECRET_KEY": "q3Vf0Zr8mXo1T6bKpW2yLcN9sHdG4uJeA7iR5tYvB0w",
    "DATABASE_URL": PG_URL or "postgresql+psycopg://nobody@127.0.0.1:1/none",
    "SMS_BACKEND": "http",
    "SMS_API_KEY": "key",
    "PAYMENT_PROVIDER": "yookassa",
    "YOOKASSA_SHOP_ID": "123456",
    "YOOKASSA_SECRET_KEY": "live_secret",
    "CRM_BACKEND": "amocrm",
    "EDO_BACKEND": "off",
    "AMOCRM_CLIENT_ID": "client",
    "AMOCRM_CLIENT_SECRET": "secret",
    "AMOCRM_REDIRECT_URI": "https://portal.example.ru/crm/callback",
    "MESSENGER_API_TOKEN": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/15",
    "TASK_QUEUE_URL": "redis://127.0.0.1:6379/9",
    "PROXY_FIX_HOPS": 1,
    "EMAIL_BACKEND": "smtp",
    "SMTP_HOST": "smtp.example.ru",
    "SMTP_USER": "billing",
    "SMTP_PASSWORD": "password",
    "BASE_URL": "https://portal.example.ru",
}


def test_in_production_the_cookies_are_secure_and_hsts_is_sent() -> None:
    from portal import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({**PRODUCTION, "INSTANCE_PATH": tmp})
        client = app.test_client()
        # The sign-in page touches no database: it is enough to see what the server sets.
        resp = client.get("/login", base_url="https://portal.example.ru")
        assert resp.status_code == 200
        cookie = _set_cookie(resp, "session")
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
        assert_safe_headers(resp, "production /login")
        assert app.config["REMEMBER_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_HTTPONLY"]
        app.extensions["portal.db"].engine.dispose()
