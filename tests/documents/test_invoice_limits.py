"""Issue #14: an account holds at most MAX_OPEN_INVOICES unpaid invoices; the next one is refused, nothing is used up."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from portal.billing.models import Order
from portal.documents.invoices import TooManyOpenInvoices, issue_invoice
from portal.documents.models import DocumentCounter, Invoice
from tests.documents.factories import NOW, give_requisites, issue, make_order
from tests.documents.test_invoices import ACCOUNTANT, checkout

REFUSAL = "У компании уже 5 неоплаченных счетов: оплатите или отмените один из них на главной странице."


@pytest.fixture
def company(make_account):
    return make_account(name="ООО «Ромашка»", accountant_phone=ACCOUNTANT)


def _counts(db) -> tuple[int, int, int]:
    return (
        db.scalar(sa.select(sa.func.count()).select_from(Invoice)),
        db.scalar(sa.select(sa.func.count()).select_from(Order)),
        db.scalar(sa.select(DocumentCounter.last_number)),
    )


def test_the_sixth_open_invoice_is_refused_at_checkout_and_nothing_is_created(client, auth, app, db, company):
    give_requisites(db, company)
    for _ in range(5):
        issue(app, db, company)
    before = _counts(db)
    assert before == (5, 5, 5)

    auth.login(ACCOUNTANT)
    resp = checkout(client)
    assert resp.status_code == 409
    assert REFUSAL in resp.get_data(as_text=True)
    assert _counts(db) == before  # no order, no invoice, no number


def test_paying_or_cancelling_one_frees_a_place(client, auth, app, db, company):
    give_requisites(db, company)
    invoices = [issue(app, db, company) for _ in range(5)]
    invoices[0].status = "paid"
    db.commit()
    auth.login(ACCOUNTANT)
    resp = checkout(client)
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/documents/invoices/")
    assert db.scalar(sa.select(DocumentCounter.last_number)) == 6


def test_the_service_refuses_too_and_gives_the_number_back(app, db, company):
    """A second tab may pass the checkout's check at the same time; issue_invoice itself holds the line."""
    give_requisites(db, company)
    for _ in range(5):
        issue(app, db, company)
    order = make_order(db, company)
    with app.app_context(), pytest.raises(TooManyOpenInvoices) as caught:
        issue_invoice(db, order, actor=None, now=NOW, config=app.config)
    db.rollback()
    assert str(caught.value) == REFUSAL
    assert db.scalar(sa.select(sa.func.count()).select_from(Invoice)) == 5
    assert db.scalar(sa.select(DocumentCounter.last_number)) == 5


def test_the_limit_is_a_setting(app, db, company):
    app.config["MAX_OPEN_INVOICES"] = 1
    give_requisites(db, company)
    issue(app, db, company)
    order = make_order(db, company)
    with app.app_context(), pytest.raises(TooManyOpenInvoices, match="уже 1 неоплаченный счёт"):
        issue_invoice(db, order, actor=None, now=NOW, config=app.config)


# --- checkout attempts (Flask-Limiter) ---------------------------------------------------------------------


def _orders(db) -> int:
    return db.scalar(sa.select(sa.func.count()).select_from(Order))


def _assert_throttled_page(resp) -> None:
    assert resp.status_code == 429
    html = resp.get_data(as_text=True)
    assert "Оформление заказа" in html  # the checkout page itself, not the bare error page
    assert "Слишком много попыток оформить заказ. Попробуйте через " in html
    assert re.search(r"Попробуйте через \d+ минут", html)


def test_checkout_attempts_of_one_account_are_limited(client, auth, app, db, company, make_account):
    app.config["CHECKOUT_LIMIT_PER_ACCOUNT"] = "2 per hour"
    give_requisites(db, company)
    auth.login(ACCOUNTANT)
    assert [checkout(client).status_code for _ in range(2)] == [302, 302]
    _assert_throttled_page(checkout(client))
    assert _orders(db) == 2

    # Another company at the same address is not held back by this account's attempts.
    other = make_account(name="ООО «Василёк»", owner_phone="+79161110009")
    give_requisites(db, other)
    auth.logout()
    auth.login("+79161110009")
    assert checkout(client).status_code == 302
    assert _orders(db) == 3


def test_checkout_attempts_from_one_address_are_limited(client, auth, app, db, company, make_account):
    app.config["CHECKOUT_LIMIT_PER_IP"] = "2 per hour"
    other = make_account(name="ООО «Василёк»", owner_phone="+79161110009")
    give_requisites(db, company)
    give_requisites(db, other)
    auth.login(ACCOUNTANT)
    assert [checkout(client).status_code for _ in range(2)] == [302, 302]
    auth.logout()
    auth.login("+79161110009")
    _assert_throttled_page(checkout(client))
    assert _orders(db) == 2
