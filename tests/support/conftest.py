"""Support test helpers: a signed-in staff member, a recorder for e-mail, invoices and statement lines to work on."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from portal.accounts.models import User
from portal.audit import AuditLog
from tests.conftest import Auth

STAFF_PHONE = "+79990000099"


@dataclass
class RecordingEmail:
    """An e-mail backend that keeps the letters, as a mailbox would."""

    sent: list[EmailMessage] = field(default_factory=list)

    def send(self, message: EmailMessage) -> None:
        self.sent.append(message)


@pytest.fixture
def mailbox() -> RecordingEmail:
    return RecordingEmail()


@pytest.fixture
def app_config(app_config: dict[str, Any], mailbox: RecordingEmail) -> dict[str, Any]:
    app_config["EMAIL_BACKEND_OBJECT"] = mailbox
    return app_config


@pytest.fixture
def quick_render(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about money and records, not layout: a stand-in for WeasyPrint keeps them fast."""
    from portal.documents import render

    monkeypatch.setattr(render, "render_invoice_pdf", lambda ctx: f"%PDF-invoice {ctx['number']}".encode())
    monkeypatch.setattr(render, "render_upd_pdf", lambda ctx: f"%PDF-upd {ctx['number']}".encode())


@pytest.fixture
def staff(db: Any) -> User:
    user = User(phone=STAFF_PHONE, name="Ирина Поддержкина", is_staff=True)
    db.add(user)
    db.commit()
    return user


@pytest.fixture
def staff_client(client: FlaskClient, auth: Auth, staff: User) -> FlaskClient:
    auth.login(STAFF_PHONE)
    return client


def text_of(resp: Any) -> str:
    """A page's text as a person reads it: tags dropped, entities decoded, spaces collapsed."""
    raw = re.sub(r"<[^>]+>", " ", resp.get_data(as_text=True))
    return " ".join(html.unescape(raw).replace("\u00a0", " ").split())


def audit_of(db: Any, action: str, account_id: int | None = None) -> list[AuditLog]:
    db.expire_all()
    q = sa.select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
    if account_id is not None:
        q = q.where(AuditLog.account_id == account_id)
    return list(db.scalars(q))


@pytest.fixture
def audit() -> Callable[..., list[AuditLog]]:
    return audit_of
