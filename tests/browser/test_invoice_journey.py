"""The bank-transfer path end to end: the accountant enters requisites, orders and downloads an invoice; support staff
import the bank statement that pays it; the accountant downloads the closing УПД as PDF and XML."""

from __future__ import annotations

import io
import re
import time
from typing import Any

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from portal.db import utcnow
from portal.documents.models import Invoice
from portal.payments.statement import build_statement
from portal.timeutil import msk_date
from tests.browser.conftest import shot, sign_in

pytestmark = pytest.mark.browser

ACCOUNTANT = "+79990000002"
STAFF = "+79990000099"


def text(locator: Any) -> str:
    return " ".join(locator.inner_text().replace("\xa0", " ").split())


def close_over_limit_dialog(page: Any) -> None:
    """ООО «Ромашка» is over its plan: the dialog greets the accountant on most pages; «Понятно» puts it away."""
    dialog = page.locator("#over-limit-dialog")
    if dialog.count() and dialog.is_visible():
        dialog.get_by_role("button", name="Понятно").click()
        assert not dialog.is_visible()


def download(page: Any, link_name: str) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.get_by_role("link", name=link_name).first.click()
    dl = info.value
    with open(dl.path(), "rb") as fh:
        return dl.suggested_filename, fh.read()


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages).split())


@pytest.fixture
def staff_page(browser: Any, live_server: Any) -> Any:
    """Support staff work in a browser of their own, at the same time as the accountant."""
    context = browser.new_context(
        locale="ru-RU", viewport={"width": 1280, "height": 860}, base_url=live_server.base_url
    )
    context.set_default_timeout(30000)
    yield context.new_page()
    context.close()


def bank_statement(invoice: Invoice, seller_account: str) -> bytes:
    today = msk_date(utcnow())
    payment = {
        "Номер": "512",
        "Дата": today,
        "Сумма": invoice.amount,
        "ПлательщикСчет": "40702810800000012345",
        "ДатаСписано": today,
        "Плательщик": 'ИНН 7728146350 ООО "РОМАШКА"',
        "ПлательщикИНН": "7728146350",
        "Плательщик1": 'ООО "РОМАШКА"',
        "ПлательщикКПП": "772801001",
        "ПолучательСчет": seller_account,
        "ДатаПоступило": today,
        "Получатель": 'ООО "Мессенджер Плюс"',
        "ПолучательИНН": "7712345671",
        "ВидОплаты": "01",
        "Очередность": 5,
        "НазначениеПлатежа": f"Оплата по счёту № {invoice.number} от {invoice.issued_on:%d.%m.%Y}. Без налога (НДС)",
    }
    header = {
        "Отправитель": "Бухгалтерия предприятия, редакция 3.0",
        "Получатель": "",
        "ДатаСоздания": today,
        "ДатаНачала": today,
        "ДатаКонца": today,
        "РасчСчет": seller_account,
    }
    return build_statement(header, [payment], "Windows")


def test_requisites_invoice_statement_and_upd(page, staff_page, sms_output, live_server):
    page.set_default_timeout(30000)  # documents are rendered by WeasyPrint on a shared 2-core machine
    sign_in(page, sms_output, "+7 999 000-00-02", ACCOUNTANT)
    page.wait_for_url(re.compile(r".*/$"))
    close_over_limit_dialog(page)

    # Requisites: a wrong ИНН is named next to its field and nothing is saved; the right one is.
    page.goto("/requisites")
    close_over_limit_dialog(page)
    page.get_by_label("ИНН", exact=True).fill("7728146351")
    page.get_by_label("Почта для документов").fill("buh2@romashka.example.ru")
    page.get_by_role("button", name=re.compile("Сохранить")).click()
    inn_field = page.locator(".field.has-error").first
    inn_field.wait_for()  # the form comes back with the message next to the field
    assert "ИНН" in text(inn_field)
    shot(page, "30-requisites-wrong-inn")
    close_over_limit_dialog(page)
    page.get_by_label("ИНН", exact=True).fill("7728146350")
    page.get_by_role("button", name=re.compile("Сохранить")).click()
    page.locator(".flash-success").wait_for()
    close_over_limit_dialog(page)
    shot(page, "31-requisites-saved")

    # The accountant orders «12 пользователей» for 12 months, to pay by invoice.
    page.goto("/checkout?plan=users-12&months=12")
    close_over_limit_dialog(page)
    page.get_by_label(re.compile("Юридическое лицо или ИП")).check()
    page.get_by_label(re.compile("Я принимаю условия")).check()
    page.get_by_role("button", name=re.compile("Перейти к оплате|Выставить счёт|Получить счёт")).click()
    page.wait_for_url(re.compile(r".*/documents/invoices/\d+$"))
    close_over_limit_dialog(page)
    heading = text(page.get_by_role("heading", level=1))
    number = re.search(r"№ (\d{4}-\d{6})", heading).group(1)
    shot(page, "32-invoice-page")
    name, pdf = download(page, "Скачать счёт (PDF)")
    assert pdf.startswith(b"%PDF") and name.endswith(".pdf")
    words = pdf_text(pdf)
    assert f"Счёт на оплату № {number}" in words and "11 048,40" in words  # 990 ₽ × 12 − 7 %

    # Support staff import the bank's statement; the payment matches the invoice.
    with live_server.extensions["portal.db"].session() as db:
        invoice = db.scalars(sa.select(Invoice).where(Invoice.number == number)).one()
        db.expunge(invoice)
    statement = bank_statement(invoice, live_server.config["SELLER_ACCOUNT"])
    sign_in(staff_page, sms_output, "+7 999 000-00-99", STAFF)
    staff_page.goto("/support/statements")
    staff_page.get_by_label(re.compile("Файл выписки")).set_input_files(
        files=[{"name": "kl_to_1c.txt", "mimeType": "text/plain", "buffer": statement}]
    )
    staff_page.get_by_role("button", name="Загрузить выписку").click()
    result = staff_page.locator("#result-title").locator("..")
    result.wait_for()
    assert "Сопоставлены автоматически" in text(result) and "11 048,40 ₽" in text(result) and "оплачен" in text(result)
    shot(staff_page, "33-staff-statement-imported")
    staff_page.goto("/support")
    shot(staff_page, "36-staff-console-queue")

    # The accountant's invoice is paid and its УПД is ready, as PDF and as the FNS XML. The import hands the УПД's
    # rendering to a task after it commits, so the page may first say «формируется»: she reloads, as the page asks.
    upd_ready = re.compile(r"УПД № (\d{4}-\d{6}) от")
    deadline = time.monotonic() + 60
    while True:
        page.reload()
        close_over_limit_dialog(page)
        body = text(page.locator("main"))
        found = upd_ready.search(body)
        if found or time.monotonic() > deadline:
            break
        assert "формируется" in body, body  # paid, its УПД on the way — never a page without it
        time.sleep(0.5)
    assert found, body
    upd_number = found.group(1)
    shot(page, "34-invoice-paid-upd-ready")
    name, upd_pdf = download(page, "PDF")
    assert upd_pdf.startswith(b"%PDF") and "УПД" in name
    upd_words = pdf_text(upd_pdf)
    assert upd_number in upd_words and "512" in upd_words
    name, xml = download(page, "XML")
    assert name.startswith("ON_NSCHFDOPPR_") and name.endswith(".xml")
    assert xml.startswith(b"<?xml") and b"windows-1251" in xml[:100].lower()
    decoded = xml.decode("cp1251")
    assert 'КНД="1115131"' in decoded and f'НомерДок="{upd_number}"' in decoded and 'НомерПРД="512"' in decoded
    page.goto("/documents")
    close_over_limit_dialog(page)
    listing = text(page.locator("main"))
    assert number in listing and upd_number in listing
    shot(page, "35-documents-list")
