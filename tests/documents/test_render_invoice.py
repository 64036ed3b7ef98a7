"""The printed invoice (счёт на оплату): what an accountant sees in the PDF, and that it fetches nothing."""

from __future__ import annotations

import gc
import io
import re
import socket
from datetime import date
from typing import Any

import jinja2
import pypdf
import pytest
import segno

from portal.documents import render
from portal.documents.render import (
    INVOICES_DIR,
    DocumentRenderError,
    ForbiddenResourceError,
    LocalOnlyURLFetcher,
    date_dot,
    date_ru,
    render_invoice_pdf,
    rub,
)

A4_SHORT, A4_LONG = 595.28, 841.89  # points

SELLER = {
    "name": "ООО «Софтлаб»",
    "inn": "7701234567",
    "kpp": "770101001",
    "ogrn": "1207700123456",
    "address": "125009, г. Москва, ул. Тверская, д. 7, офис 301",
    "bank_name": "АО «ТБанк», г. Москва",
    "bik": "044525974",
    "corr_account": "30101810145250000974",
    "account": "40702810910000012345",
    "director": "Кузнецов А. В.",
    "accountant": "Орлова Е. С.",
}
BUYER_LLC = {
    "kind": "org",
    "name": "ООО «Северный ветер»",
    "inn": "7802345678",
    "kpp": "780201001",
    "address": "191186, г. Санкт-Петербург, Невский пр-кт, д. 28, лит. А",
}
BUYER_IP = {
    "kind": "ip",
    "name": "ИП Соколова Анна Викторовна",
    "inn": "500100732259",
    "kpp": None,
    "address": "141400, Московская обл., г. Химки, ул. Ленина, д. 5, кв. 12",
}
EXEMPT = {
    "exempt": True,
    "rate": None,
    "amount": 0,
    "basis_text": "НДС не облагается на основании подп. 26 п. 2 ст. 149 НК РФ",
}
# 22/122 of 846 450 kopecks = 152 638.52 → 152 639 (half up).
VAT_22 = {"exempt": False, "rate": 22, "amount": 152_639, "basis_text": ""}


def make_invoice_ctx(buyer: dict[str, Any] = BUYER_LLC, vat: dict[str, Any] = EXEMPT) -> dict[str, Any]:
    """users-12 for 9 months at 5 %: 99 000 × 9 = 891 000 − 44 550 = 846 450 kopecks."""
    qr = segno.make("ST00012|Name=ООО «Софтлаб»|PersonalAcc=40702810910000012345|Sum=846450", error="m")
    vat_words = "без налога (НДС)" if vat["exempt"] else "в т.ч. НДС 22 % 1526-39"
    return {
        "number": "2026-000123",
        "date": date(2026, 11, 25),
        "due_date": date(2026, 12, 2),
        "valid_until": date(2026, 12, 2),
        "seller": SELLER,
        "buyer": buyer,
        "basis": "Лицензионный договор (оферта) ред. 2026-01 от 01.01.2026",
        "lines": [
            {
                "name": "Право использования программы «Мессенджер для команд», тариф users-12, 9 месяцев",
                "quantity": 9,
                "unit": "мес",
                "unit_code": "362",
                "price": 99_000,
                "discount": 44_550,
                "amount": 846_450,
            }
        ],
        "subtotal": 891_000,
        "discount": 44_550,
        "total": 846_450,
        "vat": vat,
        "amount_in_words": "Восемь тысяч четыреста шестьдесят четыре рубля 50 копеек",
        "purpose": f"Оплата по счёту № 2026-000123 от 25.11.2026 за право использования программы, {vat_words}",
        "qr_data_uri": qr.png_data_uri(scale=4, border=2),
    }


def pdf_text(pdf: bytes) -> str:
    """All text of the PDF with NBSP and line breaks folded to single spaces.

    A word wrapped at its own hyphen («Санкт-\nПетербург») is joined back.
    """
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    text = " ".join(page.extract_text() for page in reader.pages).replace("\u00a0", " ")
    text = re.sub(r"(?<=\w)-\s+(?=\w)", "-", text)
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def exempt_llc_pdf() -> bytes:
    return render_invoice_pdf(make_invoice_ctx())


@pytest.fixture(scope="module")
def vat_ip_pdf() -> bytes:
    return render_invoice_pdf(make_invoice_ctx(BUYER_IP, VAT_22))


def test_exempt_invoice_shows_every_field_an_accountant_looks_for(exempt_llc_pdf: bytes) -> None:
    text = pdf_text(exempt_llc_pdf)
    expected = [
        # bank block
        "АО «ТБанк», г. Москва",
        "Банк получателя",
        "БИК",
        "044525974",
        "Сч. №",
        "30101810145250000974",
        "ИНН 7701234567",
        "КПП 770101001",
        "40702810910000012345",
        "Получатель",
        # title and parties
        "Счёт на оплату № 2026-000123 от 25 ноября 2026 г.",
        "Поставщик (Исполнитель):",
        "ООО «Софтлаб», ИНН 7701234567, КПП 770101001, ОГРН 1207700123456, 125009, г. Москва",
        "Покупатель (Заказчик):",
        "ООО «Северный ветер», ИНН 7802345678, КПП 780201001, 191186, г. Санкт-Петербург",
        "Основание: Лицензионный договор (оферта) ред. 2026-01 от 01.01.2026",
        # items
        "№ Товары (работы, услуги) Кол-во Ед. Цена Скидка Сумма",
        "тариф users-12, 9 месяцев 9 мес 990,00 445,50 8 464,50",
        # totals
        "Сумма без скидки: 8 910,00",
        "Скидка: 445,50",
        "Итого: 8 464,50",
        "Без налога (НДС)",
        "Всего к оплате: 8 464,50",
        "Всего наименований 1, на сумму 8 464,50 руб.",
        "Восемь тысяч четыреста шестьдесят четыре рубля 50 копеек",
        "НДС не облагается на основании подп. 26 п. 2 ст. 149 НК РФ",
        # payment
        "Назначение платежа: Оплата по счёту № 2026-000123 от 25.11.2026",
        "Оплатить до 2 декабря 2026 г.",
        "Счёт действителен до 2 декабря 2026 г.",
        "Оплата по QR-коду в приложении банка",
        # signatures and footer
        "Руководитель",
        "/ Кузнецов А. В. /",
        "Бухгалтер",
        "/ Орлова Е. С. /",
        "Страница 1 из 1",
    ]
    missing = [item for item in expected if item not in text]
    assert not missing, f"not in the PDF: {missing}\n---\n{text}"
    assert "В том числе НДС" not in text


def test_invoice_with_vat_for_a_sole_proprietor(vat_ip_pdf: bytes) -> None:
    text = pdf_text(vat_ip_pdf)
    assert "В том числе НДС 22 %: 1 526,39" in text
    assert "Всего к оплате: 8 464,50" in text
    assert "Без налога (НДС)" not in text
    # An ИП has no КПП: the INN is followed directly by the address.
    assert "ИП Соколова Анна Викторовна, ИНН 500100732259, 141400, Московская обл." in text


def test_invoice_is_one_a4_portrait_page_with_the_qr_image(exempt_llc_pdf: bytes) -> None:
    reader = pypdf.PdfReader(io.BytesIO(exempt_llc_pdf))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert float(box.width) == pytest.approx(A4_SHORT, abs=0.5)
    assert float(box.height) == pytest.approx(A4_LONG, abs=0.5)
    assert len(reader.pages[0].images) == 1


def test_pdf_carries_the_invoice_date_not_the_render_time(exempt_llc_pdf: bytes) -> None:
    metadata = pypdf.PdfReader(io.BytesIO(exempt_llc_pdf)).metadata
    assert metadata is not None
    assert metadata["/CreationDate"].startswith("D:20261125")
    assert metadata["/Title"] == "Счёт на оплату № 2026-000123 от 25.11.2026"
    assert render_invoice_pdf(make_invoice_ctx()) == exempt_llc_pdf


def test_names_from_requisites_are_printed_literally_not_as_markup() -> None:
    buyer = {**BUYER_LLC, "name": "ООО «<b>Рога & Копыта</b>»"}
    text = pdf_text(render_invoice_pdf(make_invoice_ctx(buyer)))
    assert "ООО «<b>Рога & Копыта</b>»" in text


def test_missing_requisite_fails_instead_of_printing_a_blank() -> None:
    ctx = make_invoice_ctx()
    ctx["seller"] = {key: value for key, value in SELLER.items() if key != "bik"}
    with pytest.raises(jinja2.UndefinedError):
        render_invoice_pdf(ctx)


@pytest.mark.parametrize(
    ("kopecks", "text"),
    [
        (846_450, "8\u00a0464,50"),
        (99_000, "990,00"),
        (0, "0,00"),
        (5, "0,05"),
        (123_456_789, "1\u00a0234\u00a0567,89"),
        (-44_550, "-445,50"),
    ],
)
def test_rub_filter_formats_kopecks(kopecks: int, text: str) -> None:
    assert rub(kopecks) == text


def test_rub_filter_refuses_floats() -> None:
    with pytest.raises(TypeError):
        rub(8464.5)  # type: ignore[arg-type]


def test_date_filters() -> None:
    assert date_ru(date(2026, 11, 25)) == "25\u00a0ноября 2026\u00a0г."
    assert date_ru(date(2026, 5, 1)) == "1\u00a0мая 2026\u00a0г."
    assert date_dot(date(2026, 1, 9)) == "09.01.2026"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record (and block) every attempt to open a socket connection."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_invoice_with_an_external_image_is_refused_without_touching_the_network(
    no_network: list[object],
) -> None:
    ctx = {**make_invoice_ctx(), "qr_data_uri": "http://example.com/qr.png"}
    with pytest.raises(DocumentRenderError, match="example.com"):
        render_invoice_pdf(ctx)
    assert no_network == []


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/qr.png",
        "https://example.com/font.ttf",
        "ftp://example.com/x.css",
        "file://example.com/etc/passwd",
        "file:///etc/passwd",
        (INVOICES_DIR / "fonts").as_uri() + "/../../pyproject.toml",
        (INVOICES_DIR / "no-such-file.css").as_uri(),
    ],
)
def test_fetcher_refuses_anything_but_our_files(url: str, no_network: list[object]) -> None:
    with pytest.raises(ForbiddenResourceError):
        LocalOnlyURLFetcher().fetch(url)
    assert no_network == []


def test_fetcher_serves_our_stylesheet_fonts_and_data_uris() -> None:
    fetcher = LocalOnlyURLFetcher()
    css = fetcher.fetch((INVOICES_DIR / "print.css").as_uri())
    assert b"@page" in css.read()
    assert css.content_type == "text/css"
    font = fetcher.fetch((INVOICES_DIR / "fonts" / "DejaVuSans.ttf").as_uri())
    assert font.read(4) == b"\x00\x01\x00\x00"  # a TrueType file
    data = fetcher.fetch("data:text/plain;base64,0J/RgNC40LLQtdGC")
    assert data.read().decode("utf-8") == "Привет"


def test_no_garbage_collection_during_a_render_and_the_previous_state_after(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    real_layout = render._layout

    def layout(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real_layout(*args, **kwargs)

    monkeypatch.setattr(render, "_layout", layout)
    assert gc.isenabled()
    render_invoice_pdf(make_invoice_ctx())
    assert seen == [False]
    assert gc.isenabled()
    gc.disable()
    try:
        render_invoice_pdf(make_invoice_ctx())
        assert not gc.isenabled()  # a caller that switched it off keeps it off
    finally:
        gc.enable()
