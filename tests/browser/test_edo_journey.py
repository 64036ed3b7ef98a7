"""УПД through ЭДО in a browser: the accountant gives the company's ЭДО id, an invoice is paid (staff import the
statement), the УПД goes to the ЭДО emulator, its buyer signs it and the documents page says «подписан покупателем»;
the next one is rejected and staff see why."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import sqlalchemy as sa

from devtools.edo_emulator import EdoEmulator, serve
from portal.db import utcnow
from portal.documents import edo
from portal.documents.models import Invoice, Upd
from portal.payments.statement import build_statement
from portal.timeutil import msk_date
from tests.browser.conftest import shot, sign_in
from tests.browser.test_invoice_journey import close_over_limit_dialog, text

pytestmark = pytest.mark.browser

ACCOUNTANT = "+79990000002"
STAFF = "+79990000099"
EDO_ID = "2BM-7728146350-772801001"


@pytest.fixture
def staff_page(browser: Any, live_server: Any) -> Any:
    context = browser.new_context(
        locale="ru-RU", viewport={"width": 1280, "height": 860}, base_url=live_server.base_url
    )
    context.set_default_timeout(30000)
    yield context.new_page()
    context.close()


@pytest.fixture
def edo_emulator(live_server: Any) -> Any:
    state = EdoEmulator(seller_participant_id=live_server.config["SELLER_EDO_ID"])
    server = serve(state)
    live_server.config["EDO_EMULATOR_URL"] = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()


def statement_for(invoice: Invoice, number: str, seller_account: str) -> bytes:
    today = msk_date(utcnow())
    payer = {"ПлательщикИНН": "7728146350", "Плательщик1": 'ООО "РОМАШКА"', "ПлательщикКПП": "772801001"}
    payment = {
        "Номер": number,
        "Дата": today,
        "Сумма": invoice.amount,
        "ПлательщикСчет": "40702810800000012345",
        "ДатаСписано": today,
        "Плательщик": 'ИНН 7728146350 ООО "РОМАШКА"',
        **payer,
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


def order_and_pay(page: Any, staff_page: Any, live_server: Any, plan: str, number: str) -> str:
    """The accountant orders by invoice; staff import the statement that pays it. Returns the invoice number."""
    page.goto(f"/checkout?plan={plan}&months=12")
    close_over_limit_dialog(page)
    page.get_by_label(re.compile("Юридическое лицо или ИП")).check()
    page.get_by_label(re.compile("Я принимаю условия")).check()
    page.get_by_role("button", name=re.compile("Перейти к оплате|Выставить счёт|Получить счёт")).click()
    page.wait_for_url(re.compile(r".*/documents/invoices/\d+$"))
    invoice_number = re.search(r"№ (\d{4}-\d{6})", text(page.get_by_role("heading", level=1))).group(1)
    with live_server.extensions["portal.db"].session() as db:
        invoice = db.scalars(sa.select(Invoice).where(Invoice.number == invoice_number)).one()
        db.expunge(invoice)
    staff_page.goto("/support/statements")
    staff_page.get_by_label(re.compile("Файл выписки")).set_input_files(
        files=[
            {
                "name": f"kl_{number}.txt",
                "mimeType": "text/plain",
                "buffer": statement_for(invoice, number, live_server.config["SELLER_ACCOUNT"]),
            }
        ]
    )
    staff_page.get_by_role("button", name="Загрузить выписку").click()
    staff_page.locator("#result-title").wait_for()
    # The import hands the УПД's rendering to its own task after it commits: the ЭДО sends formed documents only.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with live_server.extensions["portal.db"].session() as db:
            status = db.scalar(sa.select(Upd.status).where(Upd.invoice_id == invoice.id))
        if status == "formed":
            break
        time.sleep(0.2)
    assert status == "formed", status
    return invoice_number


def edo_sweep(live_server: Any) -> None:
    """What the task queue runs every minute (here by hand, so the test waits for nothing)."""
    with live_server.app_context(), live_server.extensions["portal.db"].session() as db:
        edo.sweep(db, now=utcnow(), config=live_server.config, instance_path=live_server.instance_path)


def test_upd_signed_by_the_buyer_and_another_rejected(page, staff_page, sms_output, live_server, edo_emulator, browser):
    page.set_default_timeout(30000)
    sign_in(page, sms_output, "+7 999 000-00-02", ACCOUNTANT)
    page.wait_for_url(re.compile(r".*/$"))
    close_over_limit_dialog(page)
    page.goto("/requisites")
    close_over_limit_dialog(page)
    page.get_by_label("Идентификатор в системе ЭДО").fill(EDO_ID)
    page.get_by_role("button", name=re.compile("Сохранить")).click()
    page.locator(".flash-success").wait_for()
    sign_in(staff_page, sms_output, "+7 999 000-00-99", STAFF)

    order_and_pay(page, staff_page, live_server, "users-12", "512")
    edo_sweep(live_server)

    # The buyer, in the emulator's inbox, signs the УПД.
    buyer = browser.new_page()
    buyer.goto(live_server.config["EDO_EMULATOR_URL"] + "/")
    buyer.get_by_role("button", name=re.compile("^Подписать")).click()
    buyer.wait_for_load_state()
    shot(buyer, "60-edo-emulator-signed")
    edo_sweep(live_server)
    page.goto("/documents")
    close_over_limit_dialog(page)
    assert "подписан покупателем" in text(page.locator("main"))
    shot(page, "61-documents-upd-signed")

    # The next УПД (an upgrade) is rejected with a reason.
    order_and_pay(page, staff_page, live_server, "users-24", "513")
    edo_sweep(live_server)
    buyer.goto(live_server.config["EDO_EMULATOR_URL"] + "/")
    buyer.get_by_label("Причина отказа").fill("В УПД неверный адрес покупателя")
    buyer.get_by_role("button", name=re.compile("^Отклонить")).click()
    buyer.wait_for_load_state()
    edo_sweep(live_server)
    page.goto("/documents")
    close_over_limit_dialog(page)
    listing = text(page.locator("main"))
    assert "отклонён" in listing and "В УПД неверный адрес покупателя" in listing
    assert page.get_by_role("button", name=re.compile("Отправить ещё раз")).count() == 1

    staff_page.goto("/support/edo")
    staff_listing = text(staff_page.locator("main"))
    assert "ООО «Ромашка»" in staff_listing and "В УПД неверный адрес покупателя" in staff_listing
    shot(staff_page, "62-staff-edo-rejections")
    buyer.close()
