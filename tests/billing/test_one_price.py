"""One price everywhere: a paid company over its limit is quoted, on every page that names an amount, the figure its
checkout charges (the co-termed extra payment), with what it covers — never the catalog price of a new period."""

from __future__ import annotations

import re

import pytest

import portal.api.pricing
import portal.seats.views
from tests.billing.conftest import page_text
from tests.billing.terms import msk, period_total
from tests.billing.test_checkout import ACCOUNTANT, OWNER, handlers, open_checkout, rub  # noqa: F401

NOW = msk(2026, 3, 10, 15)
pytestmark = pytest.mark.usefixtures("handlers")


@pytest.fixture
def paid_over_limit(make_account, auth, freeze, buy, monkeypatch):
    """users-12 paid from 10.01.2026 for 6 months; 16 active users now: users-24 fits, as an upgrade."""
    freeze(NOW)
    monkeypatch.setattr(portal.seats.views, "utcnow", lambda: NOW)
    monkeypatch.setattr(portal.api.pricing, "utcnow", lambda: NOW)
    account = make_account(owner_phone=OWNER, accountant_phone=ACCOUNTANT, members=14)
    buy(account, "users-12", 6, msk(2026, 1, 10))  # 10.01.2026 – 09.07.2026
    auth.login(OWNER)
    return account


def _due_at_checkout(client) -> int:
    resp, fields = open_checkout(client, "users-24", 6)
    text = page_text(resp)
    assert "Переход на больший тариф" in text
    return int(fields["shown_amount"])


def test_the_dialog_banner_dashboard_plans_and_api_name_the_checkout_amount(client, paid_over_limit):
    due = _due_at_checkout(client)
    assert 0 < due < period_total("users-24", 6)  # the co-termed extra payment, not a new period's price
    quoted = f"{rub(due)} (доплата до 09.07.2026)"

    html = client.get("/").get_data(as_text=True)
    dialog = page_text_of(re.search(r"<dialog.*?</dialog>", html, re.S).group(0))
    assert f"Подходящий тариф — «24 пользователя»: {quoted}." in dialog
    assert rub(period_total("users-24", 6)) not in dialog  # the figure the dialog used to quote
    dashboard = page_text_of(re.search(r'<section class="next-step.*?</section>', html, re.S).group(0))
    assert f"к оплате {quoted}" in dashboard
    assert 'href="/checkout?plan=users-24&amp;months=6"' in html

    banner_html = client.get("/plans?months=6").get_data(as_text=True)
    line = page_text_of(re.search(r'<p class="limit-line".*?</p>', banner_html, re.S).group(0))
    assert f"{rub(due)}, доплата до 09.07.2026" in line
    card = page_text_of(re.search(r'<article[^>]*id="plan-users-24".*?</article>', banner_html, re.S).group(0))
    assert f"К оплате {quoted}" in card

    body = client.get("/api/v1/quote?plan=users-24&months=6").get_json()
    assert body["total"] == period_total("users-24", 6)  # the published price stays for the vendor's site
    assert body["for_account"]["due"] == due and body["for_account"]["covers"] == "доплата до 09.07.2026"
    assert body["for_account"]["kind"] == "upgrade"


def test_the_balance_pays_first_everywhere_as_at_checkout(client, db, paid_over_limit):
    from portal.payments import ledger

    full = _due_at_checkout(client)
    ledger.record_receipt(
        db,
        account_id=paid_over_limit.id,
        amount=10_000,
        method="bank",
        source_key="test-balance-1",
        reference="п/п № 1",
        received_on=NOW.date(),
        now=NOW,
    )
    db.commit()
    due = _due_at_checkout(client) - 10_000
    assert due == full - 10_000
    checkout = page_text(client.get("/checkout?plan=users-24&months=6"))
    assert f"Итого к оплате {rub(due)}" in checkout
    html = client.get("/").get_data(as_text=True)
    dialog = page_text_of(re.search(r"<dialog.*?</dialog>", html, re.S).group(0))
    assert f"{rub(due)} (доплата до 09.07.2026; ещё {rub(10_000)} спишутся с баланса компании)." in dialog


def page_text_of(fragment: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", fragment).replace("&nbsp;", " ").replace("\xa0", " ").split())
