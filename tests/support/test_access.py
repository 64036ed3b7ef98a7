"""No one but support staff reaches any /support URL: not a visitor, a member, an accountant or an owner."""

from __future__ import annotations

import io
from typing import Any

import pytest
import sqlalchemy as sa
from werkzeug.routing import Rule

from portal.accounts.models import Role
from portal.audit import AuditLog
from portal.db import utcnow
from portal.support.models import SupportRequest
from tests.conftest import csrf_token
from tests.documents.factories import ORG, give_requisites, issue, payment, statement
from tests.support.conftest import STAFF_PHONE

OWNER, ACCOUNTANT, MEMBER = "+79161110000", "+79161112222", "+79161113333"


def support_rules(app: Any) -> list[Rule]:
    """The staff console's rules: /support and everything under /support/ (not the owners' /support-requests)."""
    return [r for r in app.url_map.iter_rules() if r.rule == "/support" or r.rule.startswith("/support/")]


def url_for_rule(rule: Rule) -> str:
    """A concrete URL for the rule, pointing at objects that exist (id 1 of each), so only access can refuse it."""
    values: dict[str, Any] = {}
    for name in rule.arguments:
        converter = rule._converters[name]
        items = getattr(converter, "items", None)
        values[name] = sorted(items)[0] if items else 1
    url = rule.rule
    for name, value in values.items():
        url = url.replace(f"<{_converter_spec(rule, name)}:{name}>", str(value))
    assert "<" not in url, url
    return url


def _converter_spec(rule: Rule, name: str) -> str:
    start = rule.rule.index(f":{name}>")
    return rule.rule[rule.rule.rindex("<", 0, start) + 1 : start]


@pytest.fixture
def world(quick_render, app, db, make_account, add_member, staff, auth, client):
    """Account 1 with an owner, an accountant and a member; invoice 1 paid (УПД 1, files), statement line 1, request 1."""
    account = make_account(name="ООО «Ромашка»", owner_phone=OWNER)
    add_member(account, ACCOUNTANT, role=Role.ACCOUNTANT)
    add_member(account, MEMBER, role=Role.MEMBER)
    give_requisites(db, account, ORG)
    invoice = issue(app, db, account, now=utcnow())
    other = issue(app, db, account, plan="users-24", months=6, now=utcnow())
    from portal.payments.statement_lines import mark_invoice_paid

    with app.app_context():
        mark_invoice_paid(db, invoice.id, actor=staff, bank_reference="п/п № 1", paid_on=utcnow().date(), now=utcnow())
    from portal.payments.bank import import_statement

    with app.app_context():
        import_statement(
            db,
            statement(payment("9", 100, f"Оплата по счёту № {other.number}")),
            file_name="s.txt",
            actor=None,
            now=utcnow(),
        )
    db.add(
        SupportRequest(
            account_id=account.id, kind="large_plan", users_expected=2000, status="open", created_at=utcnow()
        )
    )
    db.commit()
    return account


def test_the_console_has_the_expected_urls(app):
    rules = {r.endpoint for r in support_rules(app)}
    assert {
        "support.queue",
        "support.account_search",
        "support.account_show",
        "support.trial_start",
        "support.custom_plan_new",
        "support.invoice_pay",
        "support.invoice_cancel",
        "support.document_resend",
        "support.statement_list",
        "support.line_show",
        "support.line_link",
        "support.line_dismiss",
        "support.request_show",
        "support.request_take",
        "support.request_resolve",
        "support.audit_list",
        "support.file_download",
    } <= rules


@pytest.mark.parametrize("who", ["visitor", "member", "accountant", "owner"])
def test_no_one_but_staff_reaches_any_support_url(app, client, auth, world, who):
    phones = {"member": MEMBER, "accountant": ACCOUNTANT, "owner": OWNER}
    if who != "visitor":
        auth.login(phones[who])
    token = csrf_token(client)  # a valid token, so that only the staff check can refuse a POST
    checked = 0
    for rule in support_rules(app):
        url = url_for_rule(rule)
        for method in ("GET", "POST"):
            if method == "GET":
                resp = client.get(url)
            else:
                resp = client.post(url, data={"csrf_token": token, "reason": "x", "confirm": "y", "note": "x"})
            expected = 404 if method in rule.methods else 405
            assert resp.status_code == expected, (who, method, url, resp.status_code)
            if expected == 404:
                assert "Страница не найдена" in resp.get_data(as_text=True)
                checked += 1
    assert checked >= 20
    # And nothing was changed on the way.
    with app.extensions["portal.db"].session() as db:
        assert db.scalars(sa.select(AuditLog).where(AuditLog.action.startswith("support."))).all() == []


def test_staff_reaches_every_page_of_the_console(app, client, auth, world):
    """The same URLs are real pages for staff: the 404s above come from access, not from missing objects."""
    auth.login(STAFF_PHONE)
    for rule in support_rules(app):
        if "GET" in rule.methods:
            url = url_for_rule(rule)
            assert client.get(url).status_code == 200, url


def test_nav_shows_support_to_staff_only(client, auth, world):
    auth.login(OWNER)
    assert 'href="/support"' not in client.get("/").get_data(as_text=True)
    auth.logout()
    auth.login(STAFF_PHONE)
    page = client.get("/support").get_data(as_text=True)
    assert 'href="/support"' in page and "Поддержка" in page


def test_staff_without_an_account_lands_on_the_console(client, auth, world):
    auth.login(STAFF_PHONE)
    resp = client.get("/")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/support")


def test_statement_upload_is_refused_to_owners(client, auth, world):
    auth.login(OWNER)
    resp = client.post(
        "/support/statements",
        data={"csrf_token": csrf_token(client), "statement": (io.BytesIO(b"x"), "s.txt")},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 404
