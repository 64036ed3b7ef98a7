"""Uploaded bank statements are limited in size: a bigger file is refused whole, with a clear message."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from portal.accounts.models import User
from portal.documents.models import Invoice
from portal.payments.models import StatementImport, StatementLine
from tests.conftest import Auth, csrf_token
from tests.documents.factories import give_requisites, issue, payment, statement
from tests.security.conftest import stub_renderers

STAFF = "+79990000099"
UPLOADS = ["/documents/statements/import", "/support/statements"]


@pytest.fixture
def staff_client(client: Any, auth: Auth, db: Any) -> Any:
    db.add(User(phone=STAFF, name="Поддержка", is_staff=True))
    db.commit()
    auth.login(STAFF)
    return client


def _multipart(token: str, data: bytes, name: str) -> tuple[bytes, str]:
    """The body a browser sends, built in memory (the test client would spool a big one to an unclosed temp file)."""
    boundary = "----proof-boundary-7MA4YWxkTrZu0gW"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="statement"; filename="{name}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _padded_statement(invoice: Invoice, size: int) -> bytes:
    """A well-formed statement that pays the invoice, grown past `size` with other payments."""
    pays = payment("512", invoice.amount, f"Оплата по счёту № {invoice.number}. Без НДС")
    filler = [payment(str(1000 + i), 100, "Прочее " + "x" * 150) for i in range(size // 600 + 10)]
    data = statement(pays, *filler)
    assert len(data) > size
    return data


@pytest.mark.parametrize("path", UPLOADS)
def test_a_statement_over_the_limit_is_refused_whole_with_a_clear_message(
    path: str, app: Any, db: Any, staff_client: Any, make_account: Any, monkeypatch: Any
) -> None:
    stub_renderers(monkeypatch)
    account = make_account()
    give_requisites(db, account)
    invoice = issue(app, db, account)
    limit = app.config["MAX_UPLOAD_BYTES"]
    data = _padded_statement(invoice, limit)
    body, content_type = _multipart(csrf_token(staff_client, path), data, "big.txt")
    resp = staff_client.post(path, data=body, content_type=content_type)
    assert resp.status_code == 413
    text = resp.get_data(as_text=True)
    assert "Файл слишком большой" in text and f"не больше {limit // (1024 * 1024)} МБ" in text
    db.expire_all()
    assert db.get(Invoice, invoice.id).status == "issued"
    assert db.scalar(sa.select(sa.func.count()).select_from(StatementImport)) == 0
    assert db.scalar(sa.select(sa.func.count()).select_from(StatementLine)) == 0


def test_the_same_statement_under_the_limit_is_imported(
    app: Any, db: Any, staff_client: Any, make_account: Any, monkeypatch: Any
) -> None:
    """The control: what was refused above is refused for its size alone."""
    stub_renderers(monkeypatch)
    account = make_account()
    give_requisites(db, account)
    invoice = issue(app, db, account)
    data = _padded_statement(invoice, 64 * 1024)
    app.config["MAX_CONTENT_LENGTH"] = 10 * 1024 * 1024
    body, content_type = _multipart(csrf_token(staff_client, UPLOADS[0]), data, "ok.txt")
    resp = staff_client.post(UPLOADS[0], data=body, content_type=content_type)
    # Accepted, and imported by a task (run where it is queued in tests); the page redirects to its progress.
    assert resp.status_code == 302 and "/support/statements?run=" in resp.headers["Location"]
    resp.close()
    db.expire_all()
    assert db.get(Invoice, invoice.id).status == "paid"
