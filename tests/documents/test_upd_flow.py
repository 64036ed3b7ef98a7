"""УПД after payment: numbered with the payment, PDF and XML stored with their hashes, and never lost to a crash."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pypdf
import pytest
import sqlalchemy as sa
from lxml import etree

from portal.billing.subscriptions import get_subscription_state
from portal.billing.tick import tick
from portal.documents import render, store
from portal.documents.models import Invoice, StoredFile, Upd
from portal.documents.service import read_file
from portal.payments.bank import import_statement
from tests.documents.factories import IP, give_requisites, issue, payment, statement

XSD = Path(__file__).parent / "xsd" / "ON_NSCHFDOPPR_1_997_01_05_03_05.structure.xsd"
PAID_AT = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)  # 10:00 in Moscow


def pdf_text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    text = " ".join(page.extract_text() for page in reader.pages).replace("\u00a0", " ")
    text = re.sub(r"\u2010\s*", "", text)
    text = re.sub(r"(?<=\w)-\s+(?=\w)", "-", text)
    return re.sub(r"\s+", " ", text)


def pay(app, db, invoice: Invoice, number: str = "512", day: date = date(2026, 11, 26), **kw):
    data = statement(payment(number, invoice.amount, f"Оплата по счёту № {invoice.number}", day=day, **kw))
    with app.app_context():
        return import_statement(db, data, file_name="s.txt", actor=None, now=PAID_AT)


def files_of(app, db, upd: Upd) -> tuple[bytes, bytes, StoredFile]:
    with app.app_context():
        pdf = read_file(db.get(StoredFile, upd.pdf_file_id))
        xml_file = db.get(StoredFile, upd.xml_file_id)
        return pdf, read_file(xml_file), xml_file


@pytest.fixture
def company(make_account):
    account = make_account(name="ООО «Ромашка»")
    return account


def test_paid_invoice_gets_an_upd_with_every_required_field(app, db, company):
    give_requisites(db, company)
    invoice = issue(app, db, company)
    pay(app, db, invoice)
    upd = db.scalars(sa.select(Upd)).one()
    assert (upd.number, upd.doc_date, upd.status, upd.amount) == ("2026-000001", date(2026, 11, 27), "formed", 846_450)
    pdf, xml, xml_file = files_of(app, db, upd)
    text = pdf_text(pdf)
    expected = [
        "Универсальный передаточный документ",
        "Статус: 2",
        "Счёт-фактура № 2026-000001 от 27 ноября 2026 г. (1)",
        "Продавец ООО «Мессенджер Плюс» (2)",
        "Адрес 123112, г. Москва, Пресненская наб., д. 10, офис 501 (2а)",
        "ИНН/КПП продавца 7712345671/771201001 (2б)",
        "К платёжно-расчётному документу № 512 от 26.11.2026 (5)",
        "Документ об отгрузке № п/п 1 № 2026-000001 от 27.11.2026 (5а)",  # the day the rights begin
        "Покупатель ООО «Ромашка» (6)",
        "Адрес 117292, г. Москва, ул. Вавилова, д. 24, офис 12 (6а)",
        "ИНН/КПП покупателя 7728146350/772801001 (6б)",
        "Валюта: наименование, код Российский рубль, 643 (7)",
        "-- 1 Лицензия на использование корпоративного мессенджера, тариф «12 пользователей», 9 мес. -- 362 мес 9 "
        "940,50 8 464,50 без акциза без НДС без НДС 8 464,50",
        "Всего к оплате (9) 8 464,50 X без НДС 8 464,50",
        "Основание передачи (сдачи) / получения (приёмки) Лицензионный договор (оферта) ред. 2026-01 от 12.01.2026 [8]",
        "Генеральный директор Иванов И. И. [10]",
        "Дата отгрузки, передачи (сдачи) 27 ноября 2026 г. [11]",
        "Права предоставлены на период с 27.11.2026 по 26.08.2027 [12]",
        "ООО «Мессенджер Плюс», ИНН/КПП 7712345671/771201001 [14]",
        "Петрова А. С.",
    ]
    missing = [item for item in expected if item not in text]
    assert not missing, f"not in the PDF: {missing}\n---\n{text}"
    assert "22%" not in text

    root = etree.fromstring(xml)
    assert etree.XMLSchema(etree.parse(str(XSD))).validate(root)
    assert xml.startswith(b'<?xml version="1.0" encoding="windows-1251"?>')
    document = root.find("Документ")
    assert (document.get("КНД"), document.get("Функция")) == ("1115131", "ДОП")
    facts = document.find("СвСчФакт")
    assert (facts.get("НомерДок"), facts.get("ДатаДок")) == ("2026-000001", "27.11.2026")
    assert facts.find("СвПРД").attrib == {"НомерПРД": "512", "ДатаПРД": "26.11.2026", "СуммаПРД": "8464.50"}
    assert document.find("ТаблСчФакт/ВсегоОпл").get("СтТовУчНалВсего") == "8464.50"
    assert document.find("СвПродПер/СвПер/ОснПер").get("РеквНомерДок") == "ред. 2026-01"
    signer = document.find("Подписант/ФИО").attrib
    assert (signer["Фамилия"], signer["Имя"], signer["Отчество"]) == ("Иванов", "И.", "И.")
    assert re.fullmatch(
        r"ON_NSCHFDOPPR_7728146350_2BM-7712345671-771201001-000000000000000000001_20261127_[0-9a-f-]{36}_0_0_0_0_0_00\.xml",
        xml_file.download_name,
    )
    assert root.get("ИдФайл") == xml_file.download_name.removesuffix(".xml")


@pytest.fixture
def ip_seller(app_config):
    app_config.update(
        SELLER_NAME="ИП Кузнецов Алексей Викторович",
        SELLER_INN="771234567859",
        SELLER_KPP="",
        SELLER_OGRN="318508100000123",
        # SELLER_ACCOUNT stays the default one: the statement factory writes it as the account credited.
        SELLER_DIRECTOR="Кузнецов А. В.",
        SELLER_ACCOUNTANT="Кузнецов А. В.",
        SELLER_EDO_ID="2BM-771234567859-000000000000000000001",
    )


def test_a_sole_proprietor_sellers_upd_names_it_as_an_ip_and_is_schema_valid(ip_seller, app, db, company):
    # Issue #14: the seller was always written as an organisation (СвЮЛУч), which the FNS schema refuses for an ИП.
    give_requisites(db, company)
    invoice = issue(app, db, company)
    pay(app, db, invoice)
    upd = db.scalars(sa.select(Upd)).one()
    assert upd.status == "formed"
    _, xml, _ = files_of(app, db, upd)
    root = etree.fromstring(xml)
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(root), schema.error_log
    seller = root.find("Документ/СвСчФакт/СвПрод/ИдСв")
    assert seller.find("СвЮЛУч") is None
    assert seller.find("СвИП").get("ИННФЛ") == "771234567859"
    assert seller.find("СвИП/ФИО").attrib == {"Фамилия": "Кузнецов", "Имя": "Алексей", "Отчество": "Викторович"}
    assert root.find("Документ").get("НаимЭконСубСост") == "ИП Кузнецов Алексей Викторович, ИНН 771234567859"
    signer = root.find("Документ/Подписант")
    assert signer.get("Должн") == "Индивидуальный предприниматель"
    # The ИП signs for themself: the full ФИО from the name, not the initials of SELLER_DIRECTOR.
    assert signer.find("ФИО").attrib == {"Фамилия": "Кузнецов", "Имя": "Алексей", "Отчество": "Викторович"}


@pytest.fixture
def with_vat(app_config):
    app_config["VAT_RATE"] = "22"


def test_with_vat_the_upd_has_status_1(with_vat, app, db, make_account):
    account = make_account(name="ИП Соколов")
    give_requisites(db, account, {**IP, "edo_id": "2BE0a1b2c3d4e5f60718293a4b5c6d7e8f9"})
    invoice = issue(app, db, account)
    pay(app, db, invoice, payer_inn=IP["inn"], payer_account="40802810500000098765")
    upd = db.scalars(sa.select(Upd)).one()
    pdf, xml, xml_file = files_of(app, db, upd)
    text = pdf_text(pdf)
    assert "Статус: 1" in text
    assert "Всего к оплате (9) 6 938,11 X 1 526,39 8 464,50" in text
    assert "Покупатель ИП Соколов Сергей Викторович (6)" in text
    root = etree.fromstring(xml)
    assert etree.XMLSchema(etree.parse(str(XSD))).validate(root)
    assert root.find("Документ").get("Функция") == "СЧФДОП"
    ip = root.find("Документ/СвСчФакт/СвПокуп/ИдСв/СвИП")
    assert ip.get("ИННФЛ") == IP["inn"]
    assert ip.find("ФИО").attrib == {"Фамилия": "Соколов", "Имя": "Сергей", "Отчество": "Викторович"}
    assert xml_file.download_name.startswith("ON_NSCHFDOPPR_2BE0a1b2c3d4e5f60718293a4b5c6d7e8f9_")


def test_upd_numbers_have_their_own_gapless_counter(app, db, company, monkeypatch):
    monkeypatch.setattr(render, "render_upd_pdf", lambda ctx: f"%PDF-upd {ctx['number']}".encode())
    give_requisites(db, company)
    invoices = [issue(app, db, company) for _ in range(3)]
    # Paid out of order: УПД numbers follow the days the rights begin, not the invoices nor the payments.
    pay(app, db, invoices[2], number="1")
    pay(app, db, invoices[0], number="2")  # a second purchase: its months follow the first ones
    numbers = {u.invoice_id: u.number for u in db.scalars(sa.select(Upd))}
    assert numbers == {invoices[2].id: "2026-000001"}
    later = db.get(Invoice, invoices[0].id)
    assert later.status == "paid" and later.upd_due_on == date(2027, 8, 27)
    with app.app_context():
        tick(db, datetime(2027, 8, 26, 20, 59, tzinfo=UTC))  # 23:59 in Moscow on 26.08.2027
        assert db.scalars(sa.select(Upd).where(Upd.invoice_id == later.id)).first() is None
        tick(db, datetime(2027, 8, 26, 21, 0, tzinfo=UTC))  # midnight in Moscow: the rights begin
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == later.id)).one()
    assert (upd.number, upd.doc_date) == ("2027-000001", date(2027, 8, 27))


def test_rendering_failure_keeps_the_payment_and_the_tick_forms_the_upd_later(app, db, company, monkeypatch):
    give_requisites(db, company)
    invoice = issue(app, db, company)
    real = render.render_upd_pdf

    def broken(ctx):
        raise RuntimeError("шрифт не найден")

    monkeypatch.setattr(render, "render_upd_pdf", broken)
    pay(app, db, invoice)
    db.expire_all()
    # The money is in: the invoice and the order are paid, the plan is active; the УПД waits.
    assert db.get(Invoice, invoice.id).status == "paid"
    assert get_subscription_state(db, company.id, PAID_AT).is_paid
    upd = db.scalars(sa.select(Upd)).one()
    assert (upd.number, upd.status, upd.pdf_file_id) == ("2026-000001", "pending", None)
    assert (upd.last_error, upd.attempts) == ("RuntimeError: шрифт не найден", 1)

    # Still broken at the first tick: noted again, still pending, the tick goes on.
    with app.app_context():
        done = tick(db, datetime(2026, 11, 27, 7, 30, tzinfo=UTC))
    assert "УПД № 2026-000001 не сформирован: RuntimeError: шрифт не найден" in done
    db.expire_all()
    assert (db.get(Upd, upd.id).status, db.get(Upd, upd.id).attempts) == ("pending", 2)

    monkeypatch.setattr(render, "render_upd_pdf", real)
    with app.app_context():
        done = tick(db, datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
    assert "УПД № 2026-000001 сформирован" in done
    db.expire_all()
    upd = db.get(Upd, upd.id)
    assert upd.status == "formed" and upd.last_error is None
    pdf, _xml, _ = files_of(app, db, upd)
    assert "К платёжно-расчётному документу № 512 от 26.11.2026 (5)" in pdf_text(pdf)
    with app.app_context():
        assert not [x for x in tick(db, datetime(2026, 11, 27, 9, 0, tzinfo=UTC)) if "УПД" in x]


def test_a_crash_between_the_temporary_file_and_the_rename_leaves_no_partial_file(app, db, company, monkeypatch):
    give_requisites(db, company)
    invoice = issue(app, db, company)
    root = Path(app.config["DOCUMENT_STORE_PATH"])
    before = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())

    def crash(tmp, target):
        raise OSError("диск отключён")

    monkeypatch.setattr(store, "_before_replace", crash)
    pay(app, db, invoice)
    after = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert after == before  # neither a half-written УПД nor a leftover temporary file
    upd = db.scalars(sa.select(Upd)).one()
    assert upd.status == "pending" and "диск отключён" in upd.last_error
    db.expire_all()
    assert db.get(Invoice, invoice.id).status == "paid"

    monkeypatch.undo()
    with app.app_context():
        tick(db, datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
    db.expire_all()
    upd = db.get(Upd, upd.id)
    assert upd.status == "formed"
    files = [p.name for p in (root / str(company.id) / "upd").iterdir()]
    assert sorted(name.rsplit(".", 1)[1] for name in files) == ["pdf", "xml"]
    assert not any(name.startswith(".tmp-") for name in files)
