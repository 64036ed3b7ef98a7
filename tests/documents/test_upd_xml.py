"""The electronic УПД (format 5.03): schema-valid, windows-1251, sums and function as in the context."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from portal.documents.upd_xml import build_upd_xml, file_id, money

XSD_DIR = Path(__file__).parent / "xsd"
STRUCTURE_XSD = XSD_DIR / "ON_NSCHFDOPPR_1_997_01_05_03_05.structure.xsd"
OFFICIAL_XSD = XSD_DIR / "ON_NSCHFDOPPR_1_997_01_05_03_05.xsd"  # optional: drop the FNS file here

SENDER = "2BM-7701234567-770101001-202601010000000000001"
RECIPIENT = "2BE0a1b2c3d4e5f60718293a4b5c6d7e8f9"
GUID = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
TOTAL = 846_450  # users-12 × 9 months at 5 %
VAT = 152_639  # 22/122 of 846 450, half up

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


def make_upd_ctx(buyer: dict[str, Any] = BUYER_LLC, *, with_vat: bool = False) -> dict[str, Any]:
    if with_vat:
        vat = {"exempt": False, "rate": 22, "amount": VAT, "basis_text": ""}
        line = {"price": 77_090, "amount_without_vat": TOTAL - VAT, "vat_amount": VAT}
    else:
        vat = {"exempt": True, "rate": None, "amount": 0, "basis_text": "подп. 26 п. 2 ст. 149 НК РФ"}
        line = {"price": 94_050, "amount_without_vat": TOTAL, "vat_amount": 0}
    return {
        "number": "2026-000045",
        "date": date(2026, 11, 27),
        "correction": None,
        "seller": SELLER,
        "buyer": buyer,
        "payment_docs": [{"number": "512", "date": date(2026, 11, 26), "amount": TOTAL}],
        "advance_invoices": [],
        "gov_contract_id": None,
        "lines": [
            {
                "name": "Право использования программы «Мессенджер для команд», тариф users-12, 9 месяцев",
                "unit_code": "362",
                "unit": "мес",
                "quantity": 9,
                "amount": TOTAL,
                **line,
            }
        ],
        "total_without_vat": line["amount_without_vat"],
        "total": TOTAL,
        "vat": vat,
        "basis": {"name": "Лицензионный договор (оферта)", "number": "ред. 2026-01", "date": date(2026, 1, 1)},
        "transport": None,
        "transferred_by": {"position": "Генеральный директор", "name": "Кузнецов А. В."},
        "shipment_date": date(2026, 11, 27),
        "other_info": "Права предоставлены на период с 27.11.2026 по 26.08.2027",
        "responsible": {"position": "Генеральный директор", "name": "Кузнецов А. В."},
        "composer": "ООО «Софтлаб», ИНН/КПП 7701234567/770101001",
        "created_at": datetime(2026, 11, 27, 9, 15, 30, tzinfo=UTC),  # 12:15:30 in Moscow
        "edo": {"sender_id": SENDER, "recipient_id": RECIPIENT, "guid": GUID},
        "signer": {
            "last_name": "Кузнецов",
            "first_name": "Алексей",
            "middle_name": "Викторович",
            "position": "Генеральный директор",
        },
    }


def parse(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def one(root: etree._Element, path: str) -> etree._Element:
    found = root.findall(path)
    assert len(found) == 1, f"expected one {path}, found {len(found)}"
    return found[0]


def kopecks(text: str) -> int:
    value = Decimal(text) * 100
    assert value == value.to_integral_value(), f"{text} has more than two decimals"
    return int(value)


@pytest.fixture(scope="module")
def schemas() -> list[etree.XMLSchema]:
    paths = [STRUCTURE_XSD] + ([OFFICIAL_XSD] if OFFICIAL_XSD.exists() else [])
    return [etree.XMLSchema(etree.parse(str(path))) for path in paths]


CASES = {
    "exempt, LLC buyer": make_upd_ctx(),
    "VAT 22 %, LLC buyer": make_upd_ctx(with_vat=True),
    "exempt, sole proprietor": make_upd_ctx(BUYER_IP),
    "VAT 22 %, sole proprietor": make_upd_ctx(BUYER_IP, with_vat=True),
}


@pytest.mark.parametrize("ctx", CASES.values(), ids=CASES.keys())
def test_upd_xml_is_valid_against_the_fns_schema(ctx: dict[str, Any], schemas: list[etree.XMLSchema]) -> None:
    _, data = build_upd_xml(ctx)
    document = parse(data)
    for schema in schemas:
        assert schema.validate(document), schema.error_log


def test_schema_check_is_not_vacuous(schemas: list[etree.XMLSchema]) -> None:
    _, data = build_upd_xml(make_upd_ctx())
    broken = parse(data)
    del one(broken, "Документ").attrib["КНД"]
    assert not schemas[0].validate(broken)
    out_of_order = parse(data)
    invoice = one(out_of_order, "Документ/СвСчФакт")
    invoice.append(one(invoice, "СвПрод"))  # seller after the currency: wrong sequence
    assert not schemas[0].validate(out_of_order)


def test_file_is_windows_1251_with_the_exact_declaration() -> None:
    _, data = build_upd_xml(make_upd_ctx())
    assert data.startswith(b'<?xml version="1.0" encoding="windows-1251"?>\n<')
    assert "ООО «Северный ветер»".encode("cp1251") in data
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    buyer = one(parse(data), "Документ/СвСчФакт/СвПокуп/ИдСв/СвЮЛУч")
    assert buyer.get("НаимОрг") == "ООО «Северный ветер»"


def test_characters_outside_windows_1251_survive_as_references() -> None:
    ctx = make_upd_ctx({**BUYER_LLC, "name": "ООО «Шлоé & Ко»"})
    _, data = build_upd_xml(ctx)
    assert b"&#233;" in data
    assert one(parse(data), "Документ/СвСчФакт/СвПокуп/ИдСв/СвЮЛУч").get("НаимОрг") == "ООО «Шлоé & Ко»"


def test_file_name_carries_both_edo_ids_date_and_guid() -> None:
    name, data = build_upd_xml(make_upd_ctx())
    pattern = rf"ON_NSCHFDOPPR_{re.escape(RECIPIENT)}_{re.escape(SENDER)}_20261127_{GUID}_0_0_0_0_0_00\.xml"
    assert re.fullmatch(pattern, name)
    root = parse(data)
    assert root.tag == "Файл"
    assert root.get("ИдФайл") == name.removesuffix(".xml")
    assert root.get("ВерсФорм") == "5.03"
    assert root.get("ВерсПрог")


def test_file_date_and_time_are_moscow_time() -> None:
    ctx = {**make_upd_ctx(), "created_at": datetime(2026, 11, 27, 22, 30, 5, tzinfo=UTC)}
    name, data = build_upd_xml(ctx)
    document = one(parse(data), "Документ")
    assert document.get("ДатаИнфПр") == "28.11.2026"
    assert document.get("ВремИнфПр") == "01.30.05"
    assert "_20261128_" in name


@pytest.mark.parametrize(("with_vat", "function", "rate"), [(False, "ДОП", "без НДС"), (True, "СЧФДОП", "22%")])
def test_function_and_rate_follow_the_vat_setting(with_vat: bool, function: str, rate: str) -> None:
    _, data = build_upd_xml(make_upd_ctx(with_vat=with_vat))
    root = parse(data)
    document = one(root, "Документ")
    assert document.get("КНД") == "1115131"
    assert document.get("Функция") == function
    assert document.get("НаимДокОпр").startswith("Счет-фактура и документ" if with_vat else "Документ об отгрузке")
    assert one(root, "Документ/ТаблСчФакт/СведТов").get("НалСт") == rate


def test_exempt_upd_says_without_vat_everywhere() -> None:
    _, data = build_upd_xml(make_upd_ctx())
    root = parse(data)
    assert one(root, "Документ/ТаблСчФакт/СведТов/СумНал/БезНДС").text == "без НДС"
    assert one(root, "Документ/ТаблСчФакт/ВсегоОпл/СумНалВсего/БезНДС").text == "без НДС"
    assert one(root, "Документ/ТаблСчФакт/СведТов/Акциз/БезАкциз").text == "без акциза"
    assert root.find(".//СумНал/СумНал") is None


@pytest.mark.parametrize("with_vat", [False, True], ids=["exempt", "vat"])
def test_sums_equal_the_context(with_vat: bool) -> None:
    ctx = make_upd_ctx(with_vat=with_vat)
    _, data = build_upd_xml(ctx)
    root = parse(data)
    line, expected = one(root, "Документ/ТаблСчФакт/СведТов"), ctx["lines"][0]
    assert line.get("НомСтр") == "1"
    assert line.get("НаимТов") == expected["name"]
    assert line.get("ОКЕИ_Тов") == "362"
    assert line.get("КолТов") == "9"
    assert kopecks(line.get("ЦенаТов")) == expected["price"]
    assert kopecks(line.get("СтТовБезНДС")) == expected["amount_without_vat"]
    assert kopecks(line.get("СтТовУчНал")) == expected["amount"] == TOTAL
    totals = one(root, "Документ/ТаблСчФакт/ВсегоОпл")
    assert kopecks(totals.get("СтТовБезНДСВсего")) == ctx["total_without_vat"]
    assert kopecks(totals.get("СтТовУчНалВсего")) == ctx["total"] == TOTAL
    assert totals.get("СтТовУчНалВсего") == "8464.50"
    if with_vat:
        assert kopecks(one(line, "СумНал/СумНал").text) == VAT
        assert one(totals, "СумНалВсего/СумНал").text == "1526.39"
    payment = one(root, "Документ/СвСчФакт/СвПРД")
    assert (payment.get("НомерПРД"), payment.get("ДатаПРД"), payment.get("СуммаПРД")) == (
        "512",
        "26.11.2026",
        "8464.50",
    )


def test_parties_basis_transfer_and_signer() -> None:
    _, data = build_upd_xml(make_upd_ctx(BUYER_IP))
    root = parse(data)
    invoice = one(root, "Документ/СвСчФакт")
    assert (invoice.get("НомерДок"), invoice.get("ДатаДок")) == ("2026-000045", "27.11.2026")
    seller = one(invoice, "СвПрод/ИдСв/СвЮЛУч")
    assert (seller.get("НаимОрг"), seller.get("ИННЮЛ"), seller.get("КПП")) == (
        "ООО «Софтлаб»",
        "7701234567",
        "770101001",
    )
    ip = one(invoice, "СвПокуп/ИдСв/СвИП")
    assert ip.get("ИННФЛ") == "500100732259"
    fio = one(ip, "ФИО")
    assert (fio.get("Фамилия"), fio.get("Имя"), fio.get("Отчество")) == ("Соколова", "Анна", "Викторовна")
    assert one(invoice, "ДенИзм").attrib == {"КодОКВ": "643", "НаимОКВ": "Российский рубль"}
    transfer = one(root, "Документ/СвПродПер/СвПер")
    assert transfer.get("ДатаПер") == "27.11.2026"
    assert transfer.get("СодОпер")
    basis = one(transfer, "ОснПер")
    assert basis.attrib == {
        "РеквНаимДок": "Лицензионный договор (оферта)",
        "РеквНомерДок": "ред. 2026-01",
        "РеквДатаДок": "01.01.2026",
    }
    signer = one(root, "Документ/Подписант")
    assert signer.get("Должн") == "Генеральный директор"
    assert one(signer, "ФИО").get("Фамилия") == "Кузнецов"


SELLER_IP = {
    "name": "ИП Кузнецов Алексей Викторович",
    "inn": "771234567859",
    "kpp": "",
    "ogrn": "318508100000123",
    "address": "125009, г. Москва, ул. Тверская, д. 7, кв. 30",
    "director": "Кузнецов А. В.",
    "accountant": "Кузнецов А. В.",
}


def make_ip_seller_ctx(**kw: Any) -> dict[str, Any]:
    return {
        **make_upd_ctx(**kw),
        "seller": SELLER_IP,
        "composer": "ИП Кузнецов Алексей Викторович, ИНН 771234567859",
        "signer": {
            "last_name": "Кузнецов",
            "first_name": "Алексей",
            "middle_name": "Викторович",
            "position": "Индивидуальный предприниматель",
        },
    }


@pytest.mark.parametrize("with_vat", [False, True])
def test_a_sole_proprietor_seller_is_written_as_svip_and_the_file_is_schema_valid(
    with_vat: bool, schemas: list[etree.XMLSchema]
) -> None:
    # Issue #14: the seller was always written as СвЮЛУч, whose ИННЮЛ is 10 digits: an ИП seller's file was invalid.
    _, data = build_upd_xml(make_ip_seller_ctx(with_vat=with_vat))
    root = parse(data)
    for schema in schemas:
        assert schema.validate(root), schema.error_log
    ids = one(root, "Документ/СвСчФакт/СвПрод/ИдСв")
    assert ids.find("СвЮЛУч") is None
    ip = one(ids, "СвИП")
    assert (ip.get("ИННФЛ"), ip.get("ОГРНИП")) == ("771234567859", "318508100000123")
    fio = one(ip, "ФИО")
    assert (fio.get("Фамилия"), fio.get("Имя"), fio.get("Отчество")) == ("Кузнецов", "Алексей", "Викторович")
    signer = one(root, "Документ/Подписант")
    assert signer.get("Должн") == "Индивидуальный предприниматель"
    assert one(signer, "ФИО").attrib == {"Фамилия": "Кузнецов", "Имя": "Алексей", "Отчество": "Викторович"}


@pytest.mark.parametrize("ctx", CASES.values(), ids=CASES.keys())
def test_conditional_rules_of_the_schema_hold(ctx: dict[str, Any]) -> None:
    """The official schema's Schematron rules that lxml cannot run, for what we emit."""
    name, data = build_upd_xml(ctx)
    root = parse(data)
    document = one(root, "Документ")
    assert root.get("ИдФайл") + ".xml" == name  # file name equals ИдФайл
    assert document.get("НаимДокОпр")  # required for ДОП and СЧФДОП
    assert document.find("СвПродПер") is not None  # required for ДОП and СЧФДОП
    assert document.find("ТаблСчФакт") is not None
    for party in ("СвПрод", "СвПокуп"):  # address required for СЧФДОП; we always give it
        assert one(document, f"СвСчФакт/{party}/Адрес/АдрИнф").get("АдрТекст")
    for item in document.findall("ТаблСчФакт/СведТов"):
        assert item.get("НаимЕдИзм")  # required when ОКЕИ_Тов is present
        assert item.get("КолТов") and Decimal(item.get("ЦенаТов")) > 0  # price > 0 with a quantity
        assert item.get("СтТовУчНал") and item.get("СтТовБезНДС")
    assert one(document, "СвПродПер/СвПер").get("ДатаПер")  # no period given → ДатаПер required


def test_unsupported_vat_rate_is_refused() -> None:
    ctx = make_upd_ctx(with_vat=True)
    ctx["vat"] = {**ctx["vat"], "rate": 13}
    with pytest.raises(ValueError, match="13"):
        build_upd_xml(ctx)


def test_bad_identifiers_and_naive_time_are_refused() -> None:
    with pytest.raises(ValueError):
        file_id({**make_upd_ctx(), "edo": {"sender_id": SENDER, "recipient_id": RECIPIENT, "guid": "not-a-guid"}})
    with pytest.raises(ValueError):
        file_id({**make_upd_ctx(), "edo": {"sender_id": "../etc", "recipient_id": RECIPIENT, "guid": GUID}})
    with pytest.raises(ValueError):
        build_upd_xml({**make_upd_ctx(), "created_at": datetime(2026, 11, 27, 12, 0)})


@pytest.mark.parametrize(("value", "text"), [(846_450, "8464.50"), (5, "0.05"), (100, "1.00"), (0, "0.00")])
def test_money_is_exact_roubles_with_two_decimals(value: int, text: str) -> None:
    assert money(value) == text


def test_same_context_gives_the_same_file() -> None:
    assert build_upd_xml(make_upd_ctx()) == build_upd_xml(make_upd_ctx())
