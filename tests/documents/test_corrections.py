"""After the УПД: a refund of documented rights gets a УКД, and with VAT money received ahead of the rights gets an
advance invoice that the later УПД names on line 5б — rendered for real, the XML checked against the FNS schema."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from lxml import etree

from portal.accounts.models import User
from portal.billing.catalog import FREE_PLAN
from portal.billing.models import Order
from portal.billing.settlement import rights_cut
from portal.billing.subscriptions import get_effective_plan
from portal.billing.tick import tick
from portal.documents.invoices import vat_of
from portal.documents.models import AdvanceInvoice, Invoice, StoredFile, Ukd, Upd
from portal.documents.render import rub
from portal.documents.service import read_file
from portal.documents.upd_xml import money
from portal.payments import ledger, refunds
from portal.payments.bank import import_statement
from portal.payments.models import Refund
from tests.conftest import post
from tests.documents.factories import give_requisites, issue, payment, statement
from tests.documents.test_upd_flow import pdf_text

XSD = Path(__file__).parent / "xsd" / "ON_NSCHFDOPPR_1_997_01_05_03_05.structure.xsd"
PAID_AT = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)  # 10:00 in Moscow
OWNER = "+79161112233"


def pay(app, db, invoice: Invoice, number: str = "512", day: date = date(2026, 11, 26), now: datetime = PAID_AT):
    data = statement(payment(number, invoice.amount, f"Оплата по счёту № {invoice.number}", day=day))
    with app.app_context():
        import_statement(db, data, file_name=f"s{number}.txt", actor=None, now=now)
    db.expire_all()


def stored(app, db, file_id: int) -> bytes:
    with app.app_context():
        return read_file(db.get(StoredFile, file_id))


@pytest.fixture
def company(make_account, db):
    account = make_account(name="ООО «Ромашка»", owner_phone=OWNER)
    give_requisites(db, account)
    return account


def refund(app, db, order_id: int, cut_on: date, amount: int, now: datetime, reason: str = "Компания закрывается"):
    with app.app_context():
        done = refunds.refund_rights(
            db, order_id, cut_on=cut_on, amount=amount, reason=reason, actor=None, now=now, config=app.config
        )
        db.commit()
        from portal.documents.corrections import form_pending_corrections

        form_pending_corrections(db, now=now, config=app.config)
    db.expire_all()
    return done


def test_a_refund_of_documented_rights_forms_a_ukd_that_lowers_the_upd(app, db, client, auth, company):
    invoice = issue(app, db, company)
    pay(app, db, invoice)
    upd = db.scalars(sa.select(Upd)).one()
    order = db.get(Order, invoice.order_id)
    now = datetime(2026, 12, 27, 7, 0, tzinfo=UTC)
    cut_on = date(2027, 1, 1)
    cut = rights_cut(db, order, cut_on)
    # 9 months from 27.11.2026 to 26.08.2027: 273 days paid, 238 of them from 01.01.2027.
    assert (cut.days_paid, cut.days_returned) == (273, 238)
    assert cut.suggested_refund == (846_450 * 238 * 2 + 273) // (273 * 2)
    done = refund(app, db, order.id, cut_on, cut.suggested_refund, now)

    ukd = db.scalars(sa.select(Ukd)).one()
    assert done.ukd_id == ukd.id
    assert (ukd.number, ukd.doc_date, ukd.status) == ("К-2026-000001", date(2026, 12, 27), "formed")
    assert (ukd.amount_before, ukd.amount_after) == (846_450, 846_450 - cut.suggested_refund)
    text = pdf_text(stored(app, db, ukd.pdf_file_id))
    expected = [
        "Универсальный корректировочный документ",
        "Статус: 2",
        "Корректировочный счёт-фактура № К-2026-000001 от 27 декабря 2026 г. (1)",
        f"к счёту-фактуре (УПД) № {upd.number} от 27.11.2026",
        "Продавец ООО «Мессенджер Плюс» (2)",
        "Покупатель ООО «Ромашка» (3)",
        f"Всего уменьшение (сумма строк Г) {rub(cut.suggested_refund)}".replace("\xa0", " "),
        "Соглашение о досрочном прекращении прав по заказу № 1 от 27.12.2026",
        "Права прекращены с 01.01.2027. Компания закрывается",
    ]
    missing = [item for item in expected if item not in text]
    assert not missing, f"not in the PDF: {missing}\n---\n{text}"

    xml = stored(app, db, ukd.xml_file_id)
    assert xml.startswith(b'<?xml version="1.0" encoding="windows-1251"?>')
    root = etree.fromstring(xml)
    assert root.get("ИдФайл").startswith("ON_NKORSCHFDOPPR_")
    document = root.find("Документ")
    assert (document.get("КНД"), document.get("Функция")) == ("1115133", "ДИС")
    assert document.find("СвКСчФ").get("НомерКСчФ") == "К-2026-000001"
    assert document.find("СвКСчФ/СчФ").attrib == {"НомерСчФ": upd.number, "ДатаСчФ": "27.11.2026"}
    line = document.find("ТаблКСчФ/СведТов/СтТовУчНал").attrib
    assert line == {
        "СтоимДоИзм": "8464.50",
        "СтоимПослеИзм": money(846_450 - cut.suggested_refund),
        "СтоимУм": money(cut.suggested_refund),
    }
    assert document.find("ТаблКСчФ/ВсегоУм").get("СтТовУчНалВсего") == money(cut.suggested_refund)
    assert document.find("СодФХЖ3/ПередатДокум").get("РеквНомерДок") == upd.number

    # The money leaves by the way it came, and the plan ends the day before the cut.
    back = db.scalars(sa.select(Refund)).one()
    assert (back.amount, back.method, back.status) == (cut.suggested_refund, "bank", "requested")
    assert "Без налога (НДС)" in back.purpose
    totals = ledger.account_totals(db, company.id)
    assert (totals.received, totals.allocated, totals.refunded, totals.balance) == (
        846_450,
        846_450 - cut.suggested_refund,
        cut.suggested_refund,
        0,
    )
    assert get_effective_plan(db, company.id, datetime(2026, 12, 31, 12, tzinfo=UTC)).code == "users-12"
    assert get_effective_plan(db, company.id, datetime(2027, 1, 1, 12, tzinfo=UTC)).code == FREE_PLAN.code

    # The accountant finds it on the documents page, both files downloadable; another company gets 404.
    auth.login(OWNER)
    page = client.get("/documents").get_data(as_text=True)
    assert "УКД (корректировка)" in page and "К-2026-000001" in page
    assert client.get(f"/documents/ukd/{ukd.id}/pdf").data.startswith(b"%PDF")
    assert client.get(f"/documents/ukd/{ukd.id}/xml").data == xml


def test_a_refund_of_rights_is_refused_when_it_cannot_be_right(app, db, company):
    invoice = issue(app, db, company)
    pay(app, db, invoice)
    order = db.get(Order, invoice.order_id)
    now = datetime(2026, 12, 27, 7, 0, tzinfo=UTC)
    cases = [
        (date(2026, 12, 1), 100, "Компания закрывается", "задним числом"),
        (date(2027, 1, 1), 846_451, "Компания закрывается", "можно вернуть от 0,01 ₽ до 8\xa0464,50\xa0₽"),
        (date(2027, 1, 1), 100, "  ", "Укажите причину"),
        (date(2027, 9, 1), 100, "Компания закрывается", "и так заканчиваются"),
    ]
    for cut_on, amount, reason, message in cases:
        with pytest.raises(ledger.LedgerError, match=message):
            refund(app, db, order.id, cut_on, amount, now, reason=reason)
        db.rollback()
    # A later paid period: the earlier one cannot end early while the later one stands.
    renewal = issue(app, db, company, now=now)
    pay(app, db, renewal, number="513", day=date(2026, 12, 26), now=now)
    with pytest.raises(ledger.LedgerError, match="оплачен следующий период"):
        refund(app, db, order.id, date(2027, 1, 1), 100, now)
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(Ukd)) == 0
    assert db.scalar(sa.select(sa.func.count()).select_from(Refund)) == 0


@pytest.fixture
def with_vat(app_config):
    app_config["VAT_RATE"] = "22"


def test_money_ahead_of_the_rights_gets_an_advance_invoice_named_on_the_later_upd(
    with_vat, app, db, client, auth, company
):
    first = issue(app, db, company)
    pay(app, db, first)
    assert db.scalar(sa.select(sa.func.count()).select_from(AdvanceInvoice)) == 0  # rights began at once
    renewal = issue(app, db, company, now=PAID_AT, months=6)
    renewal_order = db.get(Order, renewal.order_id)
    assert renewal_order.starts_on == date(2027, 8, 27)
    pay(app, db, renewal, number="600", day=date(2026, 11, 27))

    advance = db.scalars(sa.select(AdvanceInvoice)).one()
    vat = vat_of(renewal_order.amount, 22)
    assert (advance.number, advance.doc_date, advance.status) == ("А-2026-000001", date(2026, 11, 27), "formed")
    assert (advance.amount, advance.vat_amount) == (renewal_order.amount, vat)
    text = pdf_text(stored(app, db, advance.pdf_file_id))
    for item in (
        "Счёт-фактура на аванс",
        "Счёт-фактура № А-2026-000001 от 27 ноября 2026 г. (1)",
        "К платёжно-расчётному документу № 600 от 27.11.2026 (5)",
        "Предварительная оплата: Лицензия на использование корпоративного мессенджера",
        f"22/122 {rub(vat)} {rub(renewal_order.amount)}".replace("\xa0", " "),
    ):
        assert item in text, f"{item!r} not in {text}"
    xml = etree.fromstring(stored(app, db, advance.xml_file_id))
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(xml), schema.error_log
    doc = xml.find("Документ")
    assert doc.get("Функция") == "СЧФ"
    item = doc.find("ТаблСчФакт/СведТов")
    assert (item.get("НалСт"), item.find("СумНал/СумНал").text) == ("22/122", money(vat))
    auth.login(OWNER)
    assert "А-2026-000001" in client.get("/documents?kind=advance").get_data(as_text=True)
    assert client.get(f"/documents/advance/{advance.id}/xml").data == stored(app, db, advance.xml_file_id)

    # No УПД yet for rights ten months away; on their first day the tick makes it, naming the advance on line 5б.
    assert db.scalar(sa.select(sa.func.count()).select_from(Upd).where(Upd.invoice_id == renewal.id)) == 0
    start = datetime(2027, 8, 27, 6, 0, tzinfo=UTC)
    with app.app_context():
        tick(db, start)
        db.commit()
    db.expire_all()
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == renewal.id)).one()
    assert upd.doc_date == date(2027, 8, 27) and upd.status == "formed"
    upd_text = pdf_text(stored(app, db, upd.pdf_file_id))
    assert "№ А-2026-000001 от 27.11.2026 (5б)" in upd_text
    upd_xml = etree.fromstring(stored(app, db, upd.xml_file_id))
    assert schema.validate(upd_xml), schema.error_log
    info = upd_xml.find("Документ/СвСчФакт/ИнфПолФХЖ1/ТекстИнф")
    assert info.attrib == {"Идентиф": "СчФНаАванс", "Значен": "№ А-2026-000001 от 27.11.2026"}


def test_a_refund_before_prepaid_rights_begin_leaves_no_upd_for_them(with_vat, app, db, company):
    first = issue(app, db, company)
    pay(app, db, first)
    renewal = issue(app, db, company, now=PAID_AT, months=6)
    pay(app, db, renewal, number="600", day=date(2026, 11, 27))
    order = db.get(Order, renewal.order_id)
    now = datetime(2027, 2, 1, 7, 0, tzinfo=UTC)
    done = refund(app, db, order.id, order.starts_on, order.amount, now)
    assert done.ukd_id is None and sum(r.amount for r in done.refunds) == order.amount
    assert "В том числе НДС 22 %" in done.refunds[0].purpose
    with app.app_context():
        tick(db, datetime(2027, 8, 27, 6, 0, tzinfo=UTC))
        db.commit()
    assert db.scalar(sa.select(sa.func.count()).select_from(Upd).where(Upd.invoice_id == renewal.id)) == 0
    assert get_effective_plan(db, company.id, datetime(2027, 8, 27, 12, tzinfo=UTC)).code == FREE_PLAN.code


def test_staff_refund_unused_days_from_the_account_page(app, db, client, auth, company):
    invoice = issue(app, db, company)
    pay(app, db, invoice)
    order = db.get(Order, invoice.order_id)
    db.add(User(phone="+79160009999", name="Ирина Поддержкина", is_staff=True))
    db.commit()
    auth.login("+79160009999")
    page = client.get(f"/support/accounts/{company.id}").get_data(as_text=True)
    assert "Вернуть за неиспользованные дни" in page
    day = (datetime.now(UTC) + timedelta(days=30)).date()
    # A preview first: the suggested amount for the days from the chosen date, nothing changed yet.
    preview = client.get(f"/support/orders/{order.id}/refund-rights?cut_on={day:%d.%m.%Y}")
    assert preview.status_code == 200
    cut = rights_cut(db, order, day)
    assert rub(cut.suggested_refund) in preview.get_data(as_text=True)
    answer = post(
        client,
        f"/support/orders/{order.id}/refund-rights",
        {
            "cut_on": f"{day:%d.%m.%Y}",
            "amount": rub(cut.suggested_refund),
            "reason": "Компания закрывается",
            "confirm": "y",
        },
    )
    assert answer.status_code == 302
    db.expire_all()
    assert db.scalars(sa.select(Refund)).one().amount == cut.suggested_refund
    assert db.scalars(sa.select(Ukd)).one().amount_after == 846_450 - cut.suggested_refund
