"""A company pays by card: «Оплачиваю как компания — нужен УПД» at checkout gives a УПД like a transfer does, and the
54-ФЗ receipt carries the company's ИНН and name."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from lxml import etree

from portal.billing.models import Order as Order_
from portal.db import utcnow
from portal.documents.models import Invoice, StoredFile, Ukd, Upd
from portal.documents.service import read_file
from portal.payments import refunds
from portal.payments.models import Payment, SandboxPayment
from portal.payments.providers.base import Customer
from portal.payments.service import card_payment_doc
from portal.timeutil import msk_date
from tests.documents.factories import ORG, give_requisites
from tests.payments.conftest import form_fields, only_order
from tests.payments.test_sandbox_flow import pay_with_card
from tests.payments.test_yookassa_provider import FakeOrder, provider

XSD = Path(__file__).parents[1] / "documents" / "xsd" / "ON_NSCHFDOPPR_1_997_01_05_03_05.structure.xsd"


def company_checkout(client, plan: str = "users-12", months: int = 9, as_company: bool = True):
    page = client.get(f"/checkout?plan={plan}&months={months}").get_data(as_text=True)
    data = form_fields(page)
    data.update(payer_type="card", accept_license="y")
    if as_company:
        data["as_company"] = "y"
    return client.post("/checkout", data=data)


def test_checkout_offers_a_upd_for_a_card_payment_only_once_requisites_are_on_file(client, db, owner):
    page = client.get("/checkout?plan=users-12&months=9").get_data(as_text=True)
    assert 'name="as_company"' not in page
    assert "Укажите реквизиты" in page  # the way to get there
    give_requisites(db, owner)
    page = client.get("/checkout?plan=users-12&months=9").get_data(as_text=True)
    assert 'name="as_company"' in page
    assert f"ИНН {ORG['inn']}" in page


def test_a_company_card_payment_gets_a_schema_valid_upd_dated_today_and_a_receipt_with_its_inn(
    app, client, db, owner, deliveries
):
    give_requisites(db, owner)
    resp = company_checkout(client)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    order = only_order(db, owner.id)
    record = db.scalars(sa.select(Invoice).where(Invoice.order_id == order.id)).one()
    assert (record.paid_by, record.status, record.pdf_file_id, record.amount) == ("card", "issued", None, 846_450)

    sandbox_row = db.get(SandboxPayment, resp.headers["Location"].rsplit("/", 1)[1])
    assert sandbox_row.receipt["customer"]["inn"] == ORG["inn"]
    assert sandbox_row.receipt["customer"]["full_name"] == ORG["name"]

    pay_with_card(client, resp.headers["Location"], "4111 1111 1111 1111")
    db.expire_all()
    assert db.get(Order_, order.id).status == "paid"
    payment = db.scalars(sa.select(Payment).where(Payment.order_id == order.id)).one()
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == record.id)).one()
    today = msk_date(utcnow())
    assert (upd.status, upd.doc_date, upd.amount) == ("formed", today, 846_450)
    with app.app_context():
        xml = read_file(db.get(StoredFile, upd.xml_file_id))
    root = etree.fromstring(xml)
    assert etree.XMLSchema(etree.parse(str(XSD))).validate(root)
    facts = root.find("Документ/СвСчФакт")
    assert facts.find("СвПРД").attrib == {
        "НомерПРД": payment.provider_payment_id,
        "ДатаПРД": f"{today:%d.%m.%Y}",
        "СуммаПРД": "8464.50",
    }
    assert facts.find("СвПокуп/ИдСв/СвЮЛУч").get("ИННЮЛ") == ORG["inn"]

    receipt_page = client.get(f"/sandbox/receipt/{payment.provider_payment_id}").get_data(as_text=True)
    assert "ИНН покупателя" in receipt_page and ORG["inn"] in receipt_page

    documents = client.get("/documents").get_data(as_text=True)
    assert "УПД" in documents and upd.number in documents
    assert "оплата картой" in documents
    # A card order's record is not a bill to pay: it is not counted, listed or offered for a transfer.
    assert f'/documents/invoices/{record.id}"' not in documents


def test_a_card_payment_without_the_box_gets_no_upd_and_a_plain_receipt(client, db, owner, deliveries):
    give_requisites(db, owner)
    resp = company_checkout(client, as_company=False)
    sandbox_row = db.get(SandboxPayment, resp.headers["Location"].rsplit("/", 1)[1])
    assert "inn" not in sandbox_row.receipt["customer"]
    pay_with_card(client, resp.headers["Location"], "4111 1111 1111 1111")
    assert db.scalar(sa.select(sa.func.count()).select_from(Upd)) == 0
    assert db.scalar(sa.select(sa.func.count()).select_from(Invoice)) == 0


def test_staff_refund_of_a_company_card_payment_finds_its_upd_and_forms_a_ukd(app, client, db, owner, deliveries):
    give_requisites(db, owner)
    resp = company_checkout(client)
    pay_with_card(client, resp.headers["Location"], "4111 1111 1111 1111")
    order = only_order(db, owner.id)
    upd = db.scalars(sa.select(Upd)).one()
    cut_on = msk_date(utcnow()) + timedelta(days=30)
    with app.app_context():
        done = refunds.refund_rights(
            db,
            order.id,
            cut_on=cut_on,
            amount=100_000,
            reason="Компания закрывается",
            actor=None,
            now=utcnow(),
            config=app.config,
        )
        db.commit()
    ukd = db.get(Ukd, done.ukd_id)
    assert ukd is not None and ukd.upd_id == upd.id
    assert ukd.amount_before - ukd.amount_after == 100_000
    assert [r.method for r in done.refunds] == ["card"]


def test_yookassa_receipt_carries_the_buyers_inn_and_name():
    body = provider().payment_request(
        FakeOrder(),
        "https://p/r",
        Customer(email="buh@romashka.ru", inn="7728146350", full_name="ООО «Ромашка»"),
    )
    assert body["receipt"]["customer"] == {
        "email": "buh@romashka.ru",
        "inn": "7728146350",
        "full_name": "ООО «Ромашка»",
    }
    assert json.dumps(body, ensure_ascii=False)


def test_a_yookassa_uuid_fits_the_upds_payment_document_number():
    doc = card_payment_doc("2e5a3b1c-000f-5000-9000-1b68e7b15f3f", date(2026, 11, 30), 846_450)
    assert doc["number"] == "2e5a3b1c000f500090001b68e7b15f"
    assert len(doc["number"]) == 30
    assert card_payment_doc("sbx_0123456789abcdef01234567", date(2026, 11, 30), 1)["number"] == (
        "sbx_0123456789abcdef01234567"
    )
