"""The printed УПД: the FNS-recommended form (2026 edition), status 2 when exempt and 1 with VAT."""

from __future__ import annotations

import io
import re
from datetime import date
from typing import Any

import pypdf
import pytest

from portal.documents.render import render_upd_pdf, upd_status

A4_SHORT, A4_LONG = 595.28, 841.89  # points

SELLER = {
    "name": "ООО «Софтлаб»",
    "inn": "7701234567",
    "kpp": "770101001",
    "address": "125009, г. Москва, ул. Тверская, д. 7, офис 301",
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
LICENCE = "Право использования программы «Мессенджер для команд», тариф users-12, 9 месяцев"
TOTAL = 846_450  # users-12 × 9 months at 5 %
VAT = 152_639  # 22/122 of 846 450, half up


def make_upd_ctx(buyer: dict[str, Any] = BUYER_LLC, *, with_vat: bool = False, lines: int = 1) -> dict[str, Any]:
    if with_vat:
        vat = {"exempt": False, "rate": 22, "amount": VAT * lines, "basis_text": ""}
        line = {"price": 77_090, "amount_without_vat": TOTAL - VAT, "vat_amount": VAT}
    else:
        vat = {
            "exempt": True,
            "rate": None,
            "amount": 0,
            "basis_text": "НДС не облагается на основании подп. 26 п. 2 ст. 149 НК РФ",
        }
        line = {"price": 94_050, "amount_without_vat": TOTAL, "vat_amount": 0}
    return {
        "number": "2026-000045",
        "date": date(2026, 11, 27),
        "correction": None,
        "seller": SELLER,
        "buyer": buyer,
        "payment_docs": [{"number": "512", "date": date(2026, 11, 26), "amount": TOTAL * lines}],
        "advance_invoices": [],
        "gov_contract_id": None,
        "lines": [
            {"name": LICENCE, "unit_code": "362", "unit": "мес", "quantity": 9, "amount": TOTAL, **line}
            for _ in range(lines)
        ],
        "total_without_vat": line["amount_without_vat"] * lines,
        "total": TOTAL * lines,
        "vat": vat,
        "basis": {"name": "Лицензионный договор (оферта)", "number": "ред. 2026-01", "date": date(2026, 1, 1)},
        "transport": None,
        "transferred_by": {"position": "Генеральный директор", "name": "Кузнецов А. В."},
        "shipment_date": date(2026, 11, 27),
        "other_info": "Права предоставлены на период с 27.11.2026 по 26.08.2027",
        "responsible": {"position": "Генеральный директор", "name": "Кузнецов А. В."},
        "composer": "ООО «Софтлаб», ИНН/КПП 7701234567/770101001",
    }


def pdf_text(pdf: bytes) -> str:
    """All text with NBSP, line breaks and hyphenation folded, so labels read as on the form."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    text = " ".join(page.extract_text() for page in reader.pages).replace("\u00a0", " ")
    text = re.sub(r"\u2010\s*", "", text)  # automatic hyphenation in the narrow column headers
    text = re.sub(r"(?<=\w)-\s+(?=\w)", "-", text)
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def exempt_pdf() -> bytes:
    return render_upd_pdf(make_upd_ctx())


@pytest.fixture(scope="module")
def vat_pdf() -> bytes:
    return render_upd_pdf(make_upd_ctx(BUYER_IP, with_vat=True))


HEADER = [
    "Универсальный передаточный документ",
    "1 — счет-фактура и передаточный документ (акт)",
    "2 — передаточный документ (акт)",
    "Счёт-фактура № 2026-000045 от 27 ноября 2026 г. (1)",
    "Исправление № -- от -- (1а)",
    "Приложение № 1 к постановлению Правительства Российской Федерации от 26 декабря 2011 г. № 1137",
    "Продавец ООО «Софтлаб» (2)",
    "Адрес 125009, г. Москва, ул. Тверская, д. 7, офис 301 (2а)",
    "ИНН/КПП продавца 7701234567/770101001 (2б)",
    "Грузоотправитель и его адрес -- (3)",
    "Грузополучатель и его адрес -- (4)",
    "К платёжно-расчётному документу № 512 от 26.11.2026 (5)",
    "Документ об отгрузке № п/п 1 № 2026-000045 от 27.11.2026 (5а)",
    "передачи имущественных прав -- (5б)",
    "Валюта: наименование, код Российский рубль, 643 (7)",
    "Идентификатор государственного контракта, договора (соглашения) (при наличии) (8)",
]
TABLE_HEADER = [
    "Код товара/ работ, услуг",
    "№ п/п",
    "Наименование товара (описание выполненных работ, оказанных услуг), имущественного права",
    "Код вида товара",
    "Единица измерения",
    "Количество (объём)",
    "Цена (тариф) за единицу измерения",
    "В том числе сумма акциза",
    "Налоговая ставка",
    "Сумма налога, предъявляемая покупателю",
    "Страна происхождения товара",
    "цифровой код",
    "краткое наименование",
    "Регистрационный номер декларации на товары или регистрационный номер партии товара",
    "А 1 1а 1б 2 2а 3 4 5 6 7 8 9 10 10а 11 12 12а 13",
]
SIGNATURES_AND_TRANSFER = [
    "Документ составлен на 1 листе",
    "Руководитель организации или иное уполномоченное лицо",
    "Главный бухгалтер или иное уполномоченное лицо",
    "Кузнецов А. В.",
    "Орлова Е. С.",
    "Основание передачи (сдачи) / получения (приёмки) Лицензионный договор (оферта) ред. 2026-01 от 01.01.2026 [8]",
    "Данные о транспортировке и грузе -- [9]",
    "Товар (груз) передал / услуги, результаты работ, права сдал",
    "[10]",
    "Дата отгрузки, передачи (сдачи) 27 ноября 2026 г. [11]",
    "Иные сведения об отгрузке, передаче",
    "Права предоставлены на период с 27.11.2026 по 26.08.2027 [12]",
    "Ответственный за правильность оформления факта хозяйственной жизни",
    "[13]",
    "Наименование экономического субъекта – составителя документа (в т.ч. комиссионера / агента)",
    "ООО «Софтлаб», ИНН/КПП 7701234567/770101001 [14]",
    "Товар (груз) получил / услуги, результаты работ, права принял",
    "[15]",
    "Дата получения (приёмки)",
    "[16]",
    "Иные сведения о получении, приёмке",
    "[17]",
    "[18]",
    "[19]",
    "М.П.",
]


def assert_all_in(expected: list[str], text: str) -> None:
    missing = [item for item in expected if item not in text]
    assert not missing, f"not in the PDF: {missing}\n---\n{text}"


def test_exempt_upd_has_status_2_and_every_line_of_the_form(exempt_pdf: bytes) -> None:
    text = pdf_text(exempt_pdf)
    assert_all_in(HEADER + TABLE_HEADER + SIGNATURES_AND_TRANSFER, text)
    assert "Статус: 2" in text
    assert "Покупатель ООО «Северный ветер» (6)" in text
    assert "ИНН/КПП покупателя 7802345678/780201001 (6б)" in text
    # The row: code --, № 1, name, 1б --, 362 мес, 9, price, cost, excise, rate, tax, total, -- ×6.
    assert f"-- 1 {LICENCE} -- 362 мес 9 940,50 8 464,50 без акциза без НДС без НДС 8 464,50 -- -- -- -- -- --" in text
    assert "Всего к оплате (9) 8 464,50 X без НДС 8 464,50" in text
    assert "22%" not in text


def test_upd_with_vat_has_status_1_rate_and_tax_amounts(vat_pdf: bytes) -> None:
    text = pdf_text(vat_pdf)
    assert "Статус: 1" in text
    assert "9 770,90 6 938,11 без акциза 22% 1 526,39 8 464,50" in text
    assert "Всего к оплате (9) 6 938,11 X 1 526,39 8 464,50" in text
    assert "без НДС" not in text
    # An ИП buyer has no КПП.
    assert "Покупатель ИП Соколова Анна Викторовна (6)" in text
    assert "ИНН/КПП покупателя 500100732259 (6б)" in text


def test_status_follows_the_vat_setting() -> None:
    assert upd_status(make_upd_ctx()) == 2
    assert upd_status(make_upd_ctx(with_vat=True)) == 1


def test_upd_is_one_a4_landscape_page(exempt_pdf: bytes, vat_pdf: bytes) -> None:
    for pdf in (exempt_pdf, vat_pdf):
        reader = pypdf.PdfReader(io.BytesIO(pdf))
        assert len(reader.pages) == 1
        box = reader.pages[0].mediabox
        assert float(box.width) == pytest.approx(A4_LONG, abs=0.5)
        assert float(box.height) == pytest.approx(A4_SHORT, abs=0.5)


def test_long_upd_states_its_real_number_of_sheets() -> None:
    pdf = render_upd_pdf(make_upd_ctx(lines=25))
    pages = len(pypdf.PdfReader(io.BytesIO(pdf)).pages)
    text = pdf_text(pdf)
    assert pages > 1
    assert f"Документ составлен на {pages} листах" in text
    assert f"Страница {pages} из {pages}" in text
    assert "Всего к оплате (9) 211 612,50 X без НДС 211 612,50" in text


def test_correction_and_advance_invoice_lines_are_filled_when_given() -> None:
    ctx = {
        **make_upd_ctx(with_vat=True),
        "correction": {"number": "1", "date": date(2026, 12, 1)},
        "advance_invoices": [{"number": "А-17", "date": date(2026, 11, 26)}],
        "gov_contract_id": "1770123456726000000000000",
    }
    text = pdf_text(render_upd_pdf(ctx))
    assert "Исправление № 1 от 01.12.2026 (1а)" in text
    assert "передачи имущественных прав № А-17 от 26.11.2026 (5б)" in text
    assert "(при наличии) 1770123456726000000000000 (8)" in text


def test_markup_in_requisites_is_printed_not_fetched() -> None:
    ctx = {**make_upd_ctx(), "other_info": "--"}
    ctx["seller"] = {**SELLER, "name": 'ООО «Софтлаб»<img src="http://example.com/x.png">'}
    # Autoescaping keeps the markup as text, so nothing is fetched and the name prints verbatim.
    text = pdf_text(render_upd_pdf(ctx))
    assert 'ООО «Софтлаб»<img src="http://example.com/x.png">' in text
