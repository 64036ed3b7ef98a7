"""Invoices from the checkout: requisites first, a gapless number, validity in banking days, a PDF rendered once."""

from __future__ import annotations

import hashlib
import io
import re
import threading
from datetime import UTC, date, datetime, timedelta

import pypdf
import pypdfium2
import pytest
import sqlalchemy as sa
import zxingcpp

from portal.audit import AuditLog
from portal.billing.models import Order
from portal.billing.settlement import apply_paid_order
from portal.documents import invoices as invoices_module
from portal.documents.banking_days import add_banking_days, is_banking_day
from portal.documents.invoices import issue_invoice
from portal.documents.models import Invoice, StoredFile
from portal.money import format_amount
from tests.conftest import post
from tests.documents.factories import IP, NOW, ORG, give_requisites, issue, make_order

OWNER = "+79161110001"
ACCOUNTANT = "+79161110002"

EXPECTED_PURPOSE = (
    "Оплата по счёту № 2026-000001 от 25.11.2026 за лицензию, тариф «12 пользователей», 9 мес. Без налога (НДС)"
)
EXPECTED_QR = (
    "ST00012|Name=ООО «Мессенджер Плюс»|PersonalAcc=40702810303800012345|BankName=ПАО Сбербанк, г. Москва"
    "|BIC=044525225|CorrespAcc=30101810400000000225|PayeeINN=7712345671|KPP=771201001|Sum=846450"
    f"|Purpose={EXPECTED_PURPOSE}"
)


def pdf_text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    text = " ".join(page.extract_text() for page in reader.pages).replace("\u00a0", " ")
    text = re.sub(r"(?<=\w)-\s+(?=\w)", "-", text)
    return re.sub(r"\s+", " ", text)


def stored_pdf(app, db, invoice: Invoice) -> bytes:
    stored = db.get(StoredFile, invoice.pdf_file_id)
    with app.app_context():
        from portal.documents.service import read_file

        return read_file(stored)


@pytest.fixture
def company(make_account):
    return make_account(name="ООО «Ромашка»", owner_phone=OWNER, accountant_phone=ACCOUNTANT)


def checkout(client, plan="users-12", months=9):
    page = client.get(f"/checkout?plan={plan}&months={months}")
    assert page.status_code == 200, page.get_data(as_text=True)
    html = page.get_data(as_text=True)
    key = re.search(r'name="idempotency_key"[^>]*value="([^"]+)"', html).group(1)
    shown = re.search(r'name="shown_amount"[^>]*value="([^"]+)"', html).group(1)
    data = {
        "plan": plan,
        "months": str(months),
        "idempotency_key": key,
        "shown_amount": shown,
        "payer_type": "invoice",
        "accept_license": "y",
    }
    return post(client, "/checkout", data)


# --- the checkout path ------------------------------------------------------------------------------


def test_checkout_offers_the_invoice_and_issues_it_with_the_invoice_page(client, auth, db, company):
    give_requisites(db, company)
    auth.login(ACCOUNTANT)
    page = client.get("/checkout?plan=users-12&months=9").get_data(as_text=True)
    assert "Юридическое лицо или ИП: счёт на оплату" in page

    resp = checkout(client)
    assert resp.status_code == 302
    invoice = db.scalars(sa.select(Invoice)).one()
    assert resp.headers["Location"] == f"/documents/invoices/{invoice.id}"
    assert invoice.number == "2026-000001" or invoice.number.endswith("-000001")
    assert invoice.amount == 846_450

    html = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert f"Счёт на оплату № {invoice.number}" in html
    assert "Ожидает оплаты" in html
    assert "8\u00a0464,50\u00a0₽" in html
    assert "Оплатить можно по QR-коду в приложении банка" in html
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', html)
    assert f'href="/documents/invoices/{invoice.id}/pdf"' in html
    assert "Оплатить до" in html


def test_without_requisites_the_payer_fills_them_in_and_comes_back_to_checkout(client, auth, db, company):
    auth.login(OWNER)
    resp = checkout(client)
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/requisites?next=")
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Чтобы выставить счёт, укажите реквизиты компании" in page
    assert db.scalar(sa.select(sa.func.count()).select_from(Invoice)) == 0
    # The order that could not get an invoice does not linger as «waiting for payment».
    assert db.scalars(sa.select(Order.status)).all() == ["canceled"]

    back = post(client, resp.headers["Location"], ORG)
    assert back.status_code == 302
    assert back.headers["Location"] == "/checkout?plan=users-12&months=9"
    assert checkout(client).status_code == 302
    assert db.scalar(sa.select(sa.func.count()).select_from(Invoice)) == 1


def test_issuing_twice_for_the_same_order_gives_the_same_invoice(app, db, company):
    give_requisites(db, company)
    order = make_order(db, company)
    with app.app_context():
        first = issue_invoice(db, order, actor=None, now=NOW, config=app.config)
        db.commit()
        second = issue_invoice(db, order, actor=None, now=NOW + timedelta(hours=1), config=app.config)
    assert first.id == second.id
    assert db.scalar(sa.select(sa.func.count()).select_from(StoredFile)) == 1


# --- what the invoice says ----------------------------------------------------------------------------


def test_invoice_pdf_has_every_required_field(app, db, company):
    give_requisites(db, company)
    invoice = issue(app, db, company)
    text = pdf_text(stored_pdf(app, db, invoice))
    expected = [
        "ПАО Сбербанк, г. Москва",
        "Банк получателя",
        "БИК 044525225",
        "Сч. № 30101810400000000225",
        "ИНН 7712345671",
        "КПП 771201001",
        "40702810303800012345",
        "Получатель",
        "Счёт на оплату № 2026-000001 от 25 ноября 2026 г.",
        "Поставщик (Исполнитель): ООО «Мессенджер Плюс», ИНН 7712345671, КПП 771201001, ОГРН 1027700123450",
        "Покупатель (Заказчик): ООО «Ромашка», ИНН 7728146350, КПП 772801001, 117292, г. Москва",
        "Основание: Лицензионный договор (оферта) ред. 2026-01 от 12.01.2026",
        "Лицензия на использование корпоративного мессенджера, тариф «12 пользователей», 9 мес. 9 мес 990,00 445,50 8 464,50",
        "Сумма без скидки: 8 910,00",
        "Скидка: 445,50",
        "Итого: 8 464,50",
        "Без налога (НДС)",
        "Всего к оплате: 8 464,50",
        "Всего наименований 1, на сумму 8 464,50 руб.",
        "Восемь тысяч четыреста шестьдесят четыре рубля 50 копеек",
        "НДС не облагается на основании подп. 26 п. 2 ст. 149 НК РФ",
        f"Назначение платежа: {EXPECTED_PURPOSE}",
        "Оплатить до 2 декабря 2026 г.",
        "Руководитель",
        "/ Иванов И. И. /",
        "Бухгалтер",
        "/ Петрова А. С. /",
    ]
    missing = [item for item in expected if item not in text]
    assert not missing, f"not in the PDF: {missing}\n---\n{text}"
    assert "В том числе НДС" not in text
    assert invoice.purpose == EXPECTED_PURPOSE


def decode_qr(pdf: bytes) -> list[str]:
    page = pypdfium2.PdfDocument(pdf)[0]
    image = page.render(scale=4).to_pil()
    return [barcode.text for barcode in zxingcpp.read_barcodes(image)]


def test_payment_qr_read_back_from_the_pdf_is_the_gost_payload(app, db, company):
    give_requisites(db, company)
    invoice = issue(app, db, company)
    assert decode_qr(stored_pdf(app, db, invoice)) == [EXPECTED_QR]
    assert invoice.qr_payload == EXPECTED_QR


@pytest.fixture
def with_vat(app_config):
    app_config["VAT_RATE"] = "22"


@pytest.fixture
def valid_5_days(app_config):
    app_config["INVOICE_VALID_BANKING_DAYS"] = 5


def test_with_vat_the_invoice_includes_it_and_says_so(with_vat, app, make_account, db):
    account = make_account(name="ИП Соколов")
    give_requisites(db, account, IP)
    invoice = issue(app, db, account)
    text = pdf_text(stored_pdf(app, db, invoice))
    # 22/122 of 8 464,50 = 1 526,38…, half up.
    assert "В том числе НДС 22 %: 1 526,39" in text
    assert "Без налога (НДС)" not in text
    assert "ИП Соколов Сергей Викторович, ИНН 500301234503, 141400" in text
    assert invoice.purpose.endswith("В том числе НДС 22 % — 1\u00a0526,39 руб.")
    assert (invoice.vat_rate, invoice.vat_amount) == (22, 152_639)
    (payload,) = decode_qr(stored_pdf(app, db, invoice))
    assert "|Sum=846450|" in payload and payload.endswith("В том числе НДС 22 % — 1 526,39 руб.")


# --- the number ----------------------------------------------------------------------------------------


def test_numbers_run_without_gaps_and_restart_each_moscow_year(app, db, make_account):
    account = make_account()
    give_requisites(db, account)
    numbers = [issue(app, db, account).number for _ in range(3)]
    assert numbers == ["2026-000001", "2026-000002", "2026-000003"]
    # 31.12.2026 21:30 UTC is already 1 January in Moscow.
    new_year = datetime(2026, 12, 31, 21, 30, tzinfo=UTC)
    assert issue(app, db, account, now=new_year).number == "2027-000001"
    assert issue(app, db, account).number == "2026-000004"


def test_a_failed_rendering_gives_the_number_back(app, db, company, monkeypatch):
    give_requisites(db, company)
    real = invoices_module.render.render_invoice_pdf

    def broken(ctx):
        raise RuntimeError("font missing")

    monkeypatch.setattr(invoices_module.render, "render_invoice_pdf", broken)
    order = make_order(db, company)
    with app.app_context(), pytest.raises(RuntimeError):
        issue_invoice(db, order, actor=None, now=NOW, config=app.config)
    db.rollback()
    monkeypatch.setattr(invoices_module.render, "render_invoice_pdf", real)
    assert issue(app, db, company).number == "2026-000001"


def _issue_concurrently(app, db, account, count: int) -> list[str]:
    orders = [make_order(db, account) for _ in range(count)]
    barrier = threading.Barrier(count)
    numbers: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(order_id: int) -> None:
        try:
            # Everyone starts together; connections are taken only after the barrier (the pool holds 15).
            barrier.wait(timeout=30)
            with app.app_context():
                session = app.extensions["portal.db"].sessionmaker()
                try:
                    order = session.get(Order, order_id)
                    invoice = issue_invoice(session, order, actor=None, now=NOW, config=app.config)
                    session.commit()
                    with lock:
                        numbers.append(invoice.number)
                finally:
                    session.close()
        except BaseException as exc:  # reported below; a thread must not swallow it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(o.id,)) for o in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return numbers


def test_twenty_concurrent_invoices_on_postgresql_get_numbers_1_to_20(pg_url, app, db, company, monkeypatch):
    give_requisites(db, company)
    real = invoices_module.render.render_invoice_pdf

    def slow_render(ctx):
        # Hold the counter's lock a little longer, so the transactions really overlap.
        threading.Event().wait(0.05)
        return real(ctx)

    monkeypatch.setattr(invoices_module.render, "render_invoice_pdf", slow_render)
    # Twenty open invoices of one account: above MAX_OPEN_INVOICES, which is not what this test is about.
    app.config["MAX_OPEN_INVOICES"] = 20
    numbers = _issue_concurrently(app, db, company, 20)
    assert sorted(numbers) == [f"2026-{n:06d}" for n in range(1, 21)]
    rows = db.execute(sa.select(Invoice.serial).order_by(Invoice.serial)).scalars().all()
    assert rows == list(range(1, 21))


def test_concurrent_invoices_on_sqlite_are_serialised_too(app, db, company):
    if app.extensions["portal.db"].is_postgres:
        pytest.skip("the PostgreSQL variant above covers it")
    give_requisites(db, company)
    assert sorted(_issue_concurrently(app, db, company, 5)) == [f"2026-{n:06d}" for n in range(1, 6)]


# --- validity ------------------------------------------------------------------------------------------


def test_validity_counts_banking_days_of_the_russian_calendar():
    assert add_banking_days(date(2026, 11, 25), 5) == date(2026, 12, 2)  # Wed → next Wed, a weekend skipped
    assert add_banking_days(date(2026, 5, 8), 5) == date(2026, 5, 18)  # 9–11 May are days off
    assert add_banking_days(date(2026, 12, 29), 3) == date(2027, 1, 12)  # 31 Dec and the January holidays
    assert not is_banking_day(date(2026, 2, 23))
    assert not is_banking_day(date(2026, 3, 9))  # 8 March on a Sunday moves to Monday
    assert is_banking_day(date(2025, 11, 1))  # a working Saturday
    assert not is_banking_day(date(2025, 11, 3))


def test_the_order_lives_as_long_as_the_invoice_is_valid(valid_5_days, app, make_account, db):
    account = make_account()
    give_requisites(db, account)
    issued = datetime(2026, 5, 8, 9, 0, tzinfo=UTC)
    invoice = issue(app, db, account, now=issued)
    assert invoice.valid_until == date(2026, 5, 18)
    order = db.get(Order, invoice.order_id)
    db.refresh(order)
    # The end of 18 May in Moscow.
    assert order.expires_at == datetime(2026, 5, 18, 21, 0, tzinfo=UTC)
    audit = db.scalars(sa.select(AuditLog).where(AuditLog.action == "documents.invoice_issued")).one()
    assert audit.after["invoice"] == invoice.number and audit.after["valid_until"] == "2026-05-18"


# --- downloads -----------------------------------------------------------------------------------------


def test_downloads_return_the_bytes_issued_and_their_hash_matches(client, auth, app, db, company, monkeypatch):
    give_requisites(db, company)
    invoice = issue(app, db, company)
    stored = db.get(StoredFile, invoice.pdf_file_id)
    auth.login(ACCOUNTANT)

    # Rendering is done once, at issue: a download must never render again.
    def no_render(ctx):
        raise AssertionError("rendered again")

    monkeypatch.setattr(invoices_module.render, "render_invoice_pdf", no_render)
    first = client.get(f"/documents/invoices/{invoice.id}/pdf")
    second = client.get(f"/documents/invoices/{invoice.id}/pdf")
    assert first.status_code == second.status_code == 200
    assert first.mimetype == "application/pdf"
    assert first.data == second.data
    assert hashlib.sha256(first.data).hexdigest() == stored.sha256
    assert first.data.startswith(b"%PDF-")
    disposition = first.headers["Content-Disposition"]
    assert disposition.startswith("attachment; ")
    assert (
        "filename*=UTF-8''%D0%A1%D1%87%D1%91%D1%82%20%D0%BD%D0%B0%20%D0%BE%D0%BF%D0%BB%D0%B0%D1%82%D1%83"
        "%20%E2%84%96%202026-000001%20%D0%BE%D1%82%2025.11.2026.pdf" in disposition
    )
    assert 'filename="Schet_na_oplatu_N_2026-000001_ot_25.11.2026.pdf"' in disposition


def test_an_upgrade_is_invoiced_as_one_payment_for_the_rest_of_the_term(app, db, company):
    give_requisites(db, company)
    first = issue(app, db, company, plan="users-12", months=12)
    apply_paid_order(db, first.order_id, now=NOW, reference="п/п № 1 от 25.11.2026")
    db.commit()
    later = datetime(2027, 5, 25, 9, 0, tzinfo=UTC)
    upgrade = issue(app, db, company, plan="users-24", months=12, now=later)
    order = db.get(Order, upgrade.order_id)
    assert order.kind == "upgrade"
    assert upgrade.line_name == (
        "Лицензия на использование корпоративного мессенджера, тариф «24 пользователя», "
        "доплата за переход на больший тариф с 25.05.2027 по 24.11.2027"
    )
    text = pdf_text(stored_pdf(app, db, upgrade))
    amount = format_amount(order.amount).replace("\u00a0", " ")
    assert f"1 усл. ед. {amount} — {amount}" in text
    assert f"Всего к оплате: {amount}" in text
