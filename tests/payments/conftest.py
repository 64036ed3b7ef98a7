"""Payment test helpers: an owner at checkout, and a sandbox whose notifications reach the app under test."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from portal.audit import AuditLog
from portal.billing.models import Order
from portal.payments.models import Payment
from portal.payments.providers import get_provider

INPUT_RE = re.compile(r"<input[^>]*>")
ATTR_RE = re.compile(r'(\w[\w-]*)="([^"]*)"')


def form_fields(page: str) -> dict[str, str]:
    """The named inputs of a page with their values, as a browser would submit them (checkboxes left out)."""
    fields = {}
    for tag in INPUT_RE.findall(page):
        attrs = {k: html.unescape(v) for k, v in ATTR_RE.findall(tag)}
        if "name" in attrs and attrs.get("type") not in ("checkbox", "radio"):
            fields[attrs["name"]] = attrs.get("value", "")
    return fields


@dataclass
class Deliveries:
    """What the sandbox sent to the webhook, and what the webhook answered."""

    sent: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    fail: bool = False


@pytest.fixture
def deliveries(app) -> Deliveries:
    """The sandbox's notifications go to the app's webhook through a test client, with the same bytes and headers
    a real HTTP delivery would carry (no server listens in these tests)."""
    record = Deliveries()
    webhook_client = app.test_client()
    sandbox = get_provider(app, "sandbox")

    def deliver(url: str, body: bytes, headers: dict[str, str]) -> int:
        record.sent.append((url, body, headers))
        if record.fail:
            import requests

            raise requests.ConnectionError("nobody listens")
        path = url.removeprefix(app.config["BASE_URL"])
        resp = webhook_client.post(path, data=body, headers=headers)
        record.answers.append(resp.status_code)
        return resp.status_code

    sandbox.deliver = deliver
    return record


def replay(app, delivery: tuple[str, bytes, dict[str, str]], remote_addr: str = "127.0.0.1") -> Any:
    url, body, headers = delivery
    return app.test_client().post(
        url.removeprefix(app.config["BASE_URL"]), data=body, headers=headers, environ_base={"REMOTE_ADDR": remote_addr}
    )


@pytest.fixture
def checkout(client) -> Callable[..., Any]:
    """Place an order on the checkout page as the signed-in owner would; returns the POST's response."""

    def place(plan: str = "users-12", months: int = 9, payer_type: str = "card", page: str | None = None) -> Any:
        if page is None:
            resp = client.get(f"/checkout?plan={plan}&months={months}")
            assert resp.status_code == 200, resp.get_data(as_text=True)
            page = resp.get_data(as_text=True)
        data = form_fields(page)
        data.update(payer_type=payer_type, accept_license="y")
        return client.post("/checkout", data=data)

    return place


@pytest.fixture
def owner(make_account, auth) -> Any:
    """A company with two members, its owner signed in."""
    account = make_account(name="ООО «Ромашка»", owner_phone="+79161110000", members=2)
    auth.login("+79161110000")
    return account


def audit_actions(db, account_id: int) -> list[str]:
    db.expire_all()
    return list(db.scalars(sa.select(AuditLog.action).where(AuditLog.account_id == account_id).order_by(AuditLog.id)))


def only_order(db, account_id: int) -> Order:
    db.expire_all()
    return db.scalars(sa.select(Order).where(Order.account_id == account_id)).one()


def payments_of(db, account_id: int) -> list[Payment]:
    db.expire_all()
    return list(db.scalars(sa.select(Payment).where(Payment.account_id == account_id).order_by(Payment.id)))
