"""СБП (Faster Payments): the checkout's QR choice, the waiting page, the sandbox's «bank app», the ledger's «sbp»."""

from __future__ import annotations

import html
import io
import json
import re
import urllib.parse

import sqlalchemy as sa
import zxingcpp
from PIL import Image

from portal.billing.subscriptions import get_subscription_state
from portal.db import utcnow
from portal.documents.models import Invoice, Upd
from portal.documents.qr import qr_png
from portal.payments import ledger, refunds
from portal.payments.models import Payment, Receipt, SandboxPayment
from tests.conftest import csrf_token
from tests.documents.factories import ORG, give_requisites
from tests.payments.conftest import form_fields, only_order, payments_of

QR_IMG = re.compile(r'<img src="(data:image/svg\+xml[^"]+)"[^>]*id="sbp-qr"')
LINK = re.compile(r'<a href="([^"]+)" id="sbp-link"')


def sbp_checkout(client, plan: str = "users-12", months: int = 9, as_company: bool = False):
    page = client.get(f"/checkout?plan={plan}&months={months}").get_data(as_text=True)
    data = form_fields(page)
    data.update(payer_type="sbp", accept_license="y")
    if as_company:
        data["as_company"] = "y"
    return client.post("/checkout", data=data)


def bank_app_url(page: str) -> str:
    """What the waiting page's QR code encodes (read back from the image) — it must be the link the page offers."""
    link = html.unescape(LINK.search(page).group(1))
    assert QR_IMG.search(page), "no QR image on the page"
    # The SVG is the same symbol qr_png draws: decode that to prove the code carries exactly the link.
    [barcode] = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr_png(link))))
    assert barcode.text == link
    return link


def press(client, url: str, action: str):
    path = urllib.parse.urlsplit(url).path
    assert client.get(path).status_code == 200
    return client.post(path, data={"csrf_token": csrf_token(client), "action": action})


def test_checkout_offers_sbp_next_to_the_card(client, owner):
    page = client.get("/checkout?plan=users-12&months=9").get_data(as_text=True)
    assert 'value="sbp"' in page
    assert "СБП — по QR-коду в приложении банка" in page
    assert page.index('value="card"') < page.index('value="sbp"') < page.index('value="invoice"')


def test_sbp_pays_the_order_through_the_bank_app_page_and_the_ledger_says_sbp(client, db, owner, deliveries):
    resp = sbp_checkout(client)
    order = only_order(db, owner.id)
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/payments/sbp/{order.id}"
    assert order.payer_type == "card"  # a card order: the same expiry, return page and ledger path

    page = client.get(f"/payments/sbp/{order.id}").get_data(as_text=True)
    assert "Оплата по СБП" in page and "8\u00a0464,50\u00a0₽" in page
    assert "Проверить оплату" in page and "Открыть в приложении банка" in page
    url = bank_app_url(page)
    [payment] = payments_of(db, owner.id)
    assert url == f"http://localhost/sandbox/sbp/{payment.provider_payment_id}"
    assert (payment.method, payment.status) == ("sbp", "pending")

    # The phone opens the code: the bank app shows what is paid and to whom.
    phone = client.get(urllib.parse.urlsplit(url).path).get_data(as_text=True)
    assert "ООО «Мессенджер Плюс»" in phone and "Оплатить" in phone and "Отменить" in phone
    resp = press(client, url, "pay")
    assert resp.status_code == 302
    [(_url, body, _headers)] = deliveries.sent
    assert json.loads(body)["object"]["payment_method"]["type"] == "sbp"
    assert deliveries.answers == [200]

    db.expire_all()
    assert only_order(db, owner.id).status == "paid"
    assert get_subscription_state(db, owner.id, utcnow()).plan.code == "users-12"
    receipt = db.scalars(sa.select(Receipt).where(Receipt.account_id == owner.id)).one()
    assert (receipt.method, receipt.amount, receipt.method_title) == ("sbp", 846_450, "СБП")

    # The waiting page now hands over to the return page, which says it is paid and how.
    resp = client.get(f"/payments/sbp/{order.id}")
    assert resp.headers["Location"] == f"/payments/return/{order.id}"
    done = client.get(f"/payments/return/{order.id}").get_data(as_text=True)
    assert "Оплата прошла" in done and "СБП" in done
    assert ">СБП<" in client.get("/payments").get_data(as_text=True)


def test_a_declined_sbp_payment_changes_nothing_and_the_return_page_says_why(client, db, owner, deliveries):
    resp = sbp_checkout(client, "users-24", 12)
    url = bank_app_url(client.get(resp.headers["Location"]).get_data(as_text=True))
    press(client, url, "decline")
    order = only_order(db, owner.id)
    assert order.status == "pending"
    [payment] = payments_of(db, owner.id)
    assert (payment.status, payment.status_reason, payment.method) == ("canceled", "insufficient_funds", "sbp")
    resp = client.get(f"/payments/sbp/{order.id}")
    assert resp.headers["Location"] == f"/payments/return/{order.id}"
    page = client.get(f"/payments/return/{order.id}").get_data(as_text=True)
    assert "Платёж не прошёл" in page and "Недостаточно средств" in page
    assert db.scalar(sa.select(sa.func.count()).select_from(Receipt)) == 0


def test_the_return_page_of_a_pending_sbp_payment_shows_the_qr_again(client, db, owner, deliveries):
    sbp_checkout(client)
    order = only_order(db, owner.id)
    resp = client.get(f"/payments/return/{order.id}")
    assert resp.headers["Location"] == f"/payments/sbp/{order.id}"


def test_choosing_the_card_after_sbp_makes_a_card_attempt_and_either_payment_is_recorded_once(
    client, db, owner, deliveries
):
    page = client.get("/checkout?plan=users-12&months=9").get_data(as_text=True)
    data = form_fields(page) | {"accept_license": "y"}
    client.post("/checkout", data=data | {"payer_type": "sbp"})
    resp = client.post("/checkout", data=data | {"payer_type": "card"})  # the same form, pressed again with card
    assert "/sandbox/pay/" in resp.headers["Location"]
    sbp, card = payments_of(db, owner.id)
    assert (sbp.method, card.method) == ("sbp", None)
    assert sbp.order_id == card.order_id  # one order (its key), two ways to pay it
    # Back to СБП and to the card again: the open attempts are shown again, no third provider payment.
    assert (
        client.post("/checkout", data=data | {"payer_type": "sbp"})
        .headers["Location"]
        .endswith(f"/payments/sbp/{sbp.order_id}")
    )
    assert (
        client.post("/checkout", data=data | {"payer_type": "card"})
        .headers["Location"]
        .endswith(card.provider_payment_id)
    )
    assert len(payments_of(db, owner.id)) == 2
    page = client.get(f"/payments/sbp/{sbp.order_id}").get_data(as_text=True)
    assert bank_app_url(page).endswith(sbp.provider_payment_id)
    # Both paid: the second payment finds the order paid and waits on the balance, flagged — never applied twice.
    card_form = {"number": "4111111111111111", "expiry": "12/30", "cvc": "123", "action": "card"}
    pay = client.post(f"/sandbox/pay/{card.provider_payment_id}", data={"csrf_token": csrf_token(client)} | card_form)
    assert pay.status_code == 302
    press(client, f"http://localhost/sandbox/sbp/{sbp.provider_payment_id}", "pay")
    db.expire_all()
    assert [p.status for p in payments_of(db, owner.id)] == ["flagged", "succeeded"]
    assert ledger.account_balance(db, owner.id) == 846_450
    # СБП money on the balance goes back through the provider, as card money does (no transfer purpose to copy).
    [refund] = refunds.request_refund(db, owner.id, actor=None, now=utcnow())
    receipt = db.get(Receipt, refund.receipt_id)
    assert (receipt.method, refund.method, refund.purpose, refund.amount) == ("sbp", "card", None, 846_450)


def test_a_company_paying_by_sbp_gets_its_upd_like_a_card_payment(client, db, owner, deliveries):
    give_requisites(db, owner)
    resp = sbp_checkout(client, as_company=True)
    order = only_order(db, owner.id)
    record = db.scalars(sa.select(Invoice).where(Invoice.order_id == order.id)).one()
    assert record.paid_by == "card"
    [payment] = payments_of(db, owner.id)
    sandbox_row = db.get(SandboxPayment, payment.provider_payment_id)
    assert sandbox_row.receipt["customer"]["inn"] == ORG["inn"]
    url = bank_app_url(client.get(resp.headers["Location"]).get_data(as_text=True))
    press(client, url, "pay")
    db.expire_all()
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == record.id)).one()
    assert (upd.status, upd.amount) == ("formed", 846_450)


def test_the_bank_app_page_is_only_for_sbp_payments(client, db, owner, deliveries):
    client.post(
        "/checkout",
        data=form_fields(client.get("/checkout?plan=users-12&months=9").get_data(as_text=True))
        | {"payer_type": "card", "accept_license": "y"},
    )
    [payment] = payments_of(db, owner.id)
    assert client.get(f"/sandbox/sbp/{payment.provider_payment_id}").status_code == 404
    assert client.get("/sandbox/sbp/sbx_nope").status_code == 404
    assert db.scalar(sa.select(sa.func.count()).select_from(Payment)) == 1
