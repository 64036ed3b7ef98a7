"""The electronic УПД: «информация продавца» in FNS format 5.03 (приказ ЕД-7-26/970@, КНД 1115131).

The tree is built in code with the standard library's ElementTree rather than from a text
template: element order and escaping of attribute values (company names are full of quotes)
are then guaranteed, and the portal needs no XML library at run time. Element and attribute
names, their order and the value formats follow the official schema
``ON_NSCHFDOPPR_1_997_01_05_03_05.xsd``; the tests validate the output against it.

Takes the same context dict as ``render.render_upd_pdf`` (see the docstring of
``portal.documents.render``) plus ``created_at``, ``edo``, ``signer`` and optionally
``operation``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import date, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from zoneinfo import ZoneInfo

from portal.documents.validators import split_ip_name

MOSCOW = ZoneInfo("Europe/Moscow")

FORMAT_VERSION = "5.03"
KND = "1115131"
FILE_PREFIX = "ON_NSCHFDOPPR"
# Format 5.03 appends flags N2…N7 to the GUID in the file name (traceable goods, marked goods
# and the like). All are off for a software licence. Taken from public 5.03 generators checked
# against operators; the format description itself was not in the reference corpora.
FILE_FLAGS = "0_0_0_0_0_00"

FACT_NAME = "Документ об отгрузке товаров (выполнении работ), передаче имущественных прав (документ об оказании услуг)"
DOC_NAME_BY_FUNCTION = {
    "СЧФДОП": "Счет-фактура и документ об отгрузке товаров (выполнении работ), передаче "
    "имущественных прав (документ об оказании услуг)",
    "ДОП": FACT_NAME,
}
SHIPMENT_DOC_NAME = "Универсальный передаточный документ"
DEFAULT_OPERATION = "Права на использование программы для ЭВМ предоставлены"
CURRENCY_CODE = "643"
CURRENCY_NAME = "Российский рубль"
COUNTRY_CODE = "643"
COUNTRY_NAME = "Россия"
NO_VAT = "без НДС"
NO_EXCISE = "без акциза"
# НалСт values the schema accepts for an ordinary (not advance, not agent) sale.
VAT_RATES = {0, 5, 7, 10, 18, 20, 22}

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_EDO_ID = re.compile(r"^[0-9A-Za-z]{3}[0-9A-Za-z-]{1,97}$")


def _program_version() -> str:
    try:
        return f"tariff-portal {version('tariff-portal')}"
    except PackageNotFoundError:  # running from a bare checkout
        return "tariff-portal"


def money(kopecks: int) -> str:
    """Kopecks as the schema's decimal roubles: 846450 → "8464.50" (exact, no float)."""
    if isinstance(kopecks, bool) or not isinstance(kopecks, int):
        raise TypeError(f"amount must be int kopecks, got {type(kopecks).__name__}")
    sign = "-" if kopecks < 0 else ""
    roubles, cents = divmod(abs(kopecks), 100)
    return f"{sign}{roubles}.{cents:02d}"


def _d(value: date) -> str:
    return value.strftime("%d.%m.%Y")


def upd_function(ctx: Mapping[str, Any]) -> str:
    """«СЧФДОП» (status 1: счёт-фактура + transfer document) or «ДОП» (status 2)."""
    return "ДОП" if ctx["vat"]["exempt"] else "СЧФДОП"


def _vat_rate(ctx: Mapping[str, Any]) -> str:
    vat = ctx["vat"]
    if vat["exempt"]:
        return NO_VAT
    if vat["rate"] not in VAT_RATES:
        raise ValueError(f"Ставка НДС {vat['rate']} % не предусмотрена форматом УПД 5.03")
    return f"{vat['rate']}%"


def _fio(parent: ET.Element, last: str, first: str, middle: str | None) -> ET.Element:
    attrs = {"Фамилия": last, "Имя": first}
    if middle:
        attrs["Отчество"] = middle
    return ET.SubElement(parent, "ФИО", attrs)


def _ip_fio(party: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """The ИП's surname, name and patronymic: explicit keys win, else split «ИП Фамилия Имя Отчество»."""
    if party.get("last_name") and party.get("first_name"):
        return party["last_name"], party["first_name"], party.get("middle_name") or None
    # The same rule the requisites form and the seller's start-up check apply, so what they accept splits here.
    return split_ip_name(party["name"])


def seller_kind(seller: Mapping[str, Any]) -> str:
    """«ip» for a sole-proprietor seller (12-digit ИНН, as the seller's settings are checked), else «org».

    Told by the ИНН rather than a stored key, so the contexts of УПД numbered before this rule build the same way."""
    return "ip" if len(str(seller["inn"])) == 12 else "org"


def _participant(parent: ET.Element, tag: str, party: Mapping[str, Any]) -> None:
    node = ET.SubElement(parent, tag)
    ids = ET.SubElement(node, "ИдСв")
    if party.get("kind", "org") == "ip":
        attrs = {"ИННФЛ": party["inn"]}
        # The seller's ОГРНИП (the buyer's is not kept in its context): the registration the invoice must name for an
        # ИП (п. 6 ст. 169 НК РФ), in the attribute the format gives it.
        if party.get("ogrn"):
            attrs["ОГРНИП"] = party["ogrn"]
        ip = ET.SubElement(ids, "СвИП", attrs)
        _fio(ip, *_ip_fio(party))
    else:
        attrs = {"НаимОрг": party["name"], "ИННЮЛ": party["inn"]}
        if party.get("kpp"):
            attrs["КПП"] = party["kpp"]
        ET.SubElement(ids, "СвЮЛУч", attrs)
    # The portal stores an address as one line, which is what АдрИнф (country + text) carries;
    # АдрРФ would need the region code split out.
    address = ET.SubElement(node, "Адрес")
    ET.SubElement(address, "АдрИнф", {"КодСтр": COUNTRY_CODE, "НаимСтран": COUNTRY_NAME, "АдрТекст": party["address"]})


def _requisites(parent: ET.Element, tag: str, name: str, number: str, when: date) -> None:
    ET.SubElement(parent, tag, {"РеквНаимДок": name, "РеквНомерДок": number, "РеквДатаДок": _d(when)})


def _tax(parent: ET.Element, tag: str, exempt: bool, kopecks: int) -> None:
    node = ET.SubElement(parent, tag)
    if exempt:
        ET.SubElement(node, "БезНДС").text = NO_VAT
    else:
        ET.SubElement(node, "СумНал").text = money(kopecks)


def file_id(ctx: Mapping[str, Any]) -> str:
    """``ON_NSCHFDOPPR_<recipient>_<sender>_<YYYYMMDD>_<GUID>_<flags>``; also the root's ИдФайл."""
    edo = ctx["edo"]
    for key in ("recipient_id", "sender_id"):
        if not _EDO_ID.match(edo[key]):
            raise ValueError(f"Идентификатор участника ЭДО «{edo[key]}» имеет неверный вид")
    if not _GUID.match(edo["guid"]):
        raise ValueError(f"GUID файла «{edo['guid']}» имеет неверный вид")
    day = _moscow(ctx["created_at"]).strftime("%Y%m%d")
    return f"{FILE_PREFIX}_{edo['recipient_id']}_{edo['sender_id']}_{day}_{edo['guid']}_{FILE_FLAGS}"


def _moscow(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    return moment.astimezone(MOSCOW)


def build_upd_xml(ctx: Mapping[str, Any]) -> tuple[str, bytes]:
    """Build the УПД exchange file; returns ``(file name, windows-1251 bytes)``.

    Status 1 (VAT charged) gives Функция «СЧФДОП», status 2 (exempt) «ДОП». Amounts are
    formatted from kopecks exactly; characters outside windows-1251 become character references.
    """
    function = upd_function(ctx)
    exempt = bool(ctx["vat"]["exempt"])
    rate = _vat_rate(ctx)
    root, doc, identifier = _root(ctx, KND, function, DOC_NAME_BY_FUNCTION[function], FACT_NAME, file_id(ctx))

    invoice = ET.SubElement(doc, "СвСчФакт", {"НомерДок": ctx["number"], "ДатаДок": _d(ctx["date"])})
    if ctx.get("correction"):
        ET.SubElement(
            invoice,
            "ИспрДок",
            {"НомИспр": str(ctx["correction"]["number"]), "ДатаИспр": _d(ctx["correction"]["date"])},
        )
    _participant(invoice, "СвПрод", {**ctx["seller"], "kind": seller_kind(ctx["seller"])})
    for payment in ctx["payment_docs"]:
        attrs = {"НомерПРД": str(payment["number"]), "ДатаПРД": _d(payment["date"])}
        if payment.get("amount") is not None:
            attrs["СуммаПРД"] = money(payment["amount"])
        ET.SubElement(invoice, "СвПРД", attrs)
    # Line 5а: the shipment document is this УПД itself.
    _requisites(invoice, "ДокПодтвОтгрНом", SHIPMENT_DOC_NAME, ctx["number"], ctx["date"])
    _participant(invoice, "СвПокуп", ctx["buyer"])
    ET.SubElement(invoice, "ДенИзм", {"КодОКВ": CURRENCY_CODE, "НаимОКВ": CURRENCY_NAME})
    if ctx.get("gov_contract_id"):
        ET.SubElement(invoice, "ДопСвФХЖ1", {"ИдГосКон": ctx["gov_contract_id"]})
    if ctx.get("advance_invoices"):
        # Line 5б (the advance счёт-фактура) has no element of its own in format 5.03: it travels as the
        # document's information field, as operators' generators write it.
        info = ET.SubElement(invoice, "ИнфПолФХЖ1")
        for advance in ctx["advance_invoices"]:
            text = f"№ {advance['number']} от {_d(advance['date'])}"
            ET.SubElement(info, "ТекстИнф", {"Идентиф": "СчФНаАванс", "Значен": text})

    table = ET.SubElement(doc, "ТаблСчФакт")
    for number, line in enumerate(ctx["lines"], start=1):
        item = goods_item(
            table,
            number,
            line,
            {
                "ОКЕИ_Тов": line["unit_code"],
                "НаимЕдИзм": line["unit"],
                "КолТов": str(line["quantity"]),
                "ЦенаТов": money(line["price"]),
                "СтТовБезНДС": money(line["amount_without_vat"]),
                "НалСт": rate,
                "СтТовУчНал": money(line["amount"]),
            },
        )
        if line.get("code"):
            ET.SubElement(item, "ДопСведТов", {"КодТов": line["code"]})
        ET.SubElement(ET.SubElement(item, "Акциз"), "БезАкциз").text = NO_EXCISE
        _tax(item, "СумНал", exempt, line["vat_amount"])
    totals = ET.SubElement(
        table,
        "ВсегоОпл",
        {"СтТовБезНДСВсего": money(ctx["total_without_vat"]), "СтТовУчНалВсего": money(ctx["total"])},
    )
    _tax(totals, "СумНалВсего", exempt, ctx["vat"]["amount"])

    shipment = ET.SubElement(doc, "СвПродПер")
    transfer = ET.SubElement(shipment, "СвПер")
    transfer.set("СодОпер", ctx.get("operation") or DEFAULT_OPERATION)
    transfer.set("ДатаПер", _d(ctx["shipment_date"]))
    basis = ctx["basis"]
    _requisites(transfer, "ОснПер", basis["name"], basis["number"], basis["date"])
    if ctx.get("other_info"):
        info = ET.SubElement(shipment, "ИнфПолФХЖ3")
        ET.SubElement(info, "ТекстИнф", {"Идентиф": "ИныеСведенияОбОтгрузке", "Значен": ctx["other_info"]})

    _signer(doc, ctx["signer"])
    return _finish(root, identifier)


def goods_item(table: ET.Element, number: int, line: Mapping[str, Any], attrs: Mapping[str, str]) -> ET.Element:
    """A line of a document's table (СведТов): its number and name, then `attrs` in the order given."""
    return ET.SubElement(table, "СведТов", {"НомСтр": str(number), "НаимТов": line["name"], **attrs})


def _root(
    ctx: Mapping[str, Any], knd: str, function: str, doc_name: str, fact_name: str | None, identifier: str
) -> tuple[ET.Element, ET.Element, str]:
    created = _moscow(ctx["created_at"])
    root = ET.Element("Файл", {"ИдФайл": identifier, "ВерсФорм": FORMAT_VERSION, "ВерсПрог": _program_version()})
    # Format 5.03 has no СвУчДокОбор block (5.01 had it): the participants' EDO ids travel only
    # in the file name, which must equal ИдФайл.
    attrs = {"КНД": knd, "Функция": function}
    if fact_name:
        attrs["ПоФактХЖ"] = fact_name
    attrs |= {
        "НаимДокОпр": doc_name,
        "ДатаИнфПр": _d(created.date()),
        "ВремИнфПр": created.strftime("%H.%M.%S"),
        "НаимЭконСубСост": ctx["composer"],
    }
    return root, ET.SubElement(root, "Документ", attrs), identifier


def _signer(doc: ET.Element, signer: Mapping[str, Any]) -> None:
    # СпосПодтПолном 1: powers follow from the qualified signature itself (the director signs).
    person = ET.SubElement(doc, "Подписант", {"Должн": signer["position"], "ТипПодпис": "1", "СпосПодтПолном": "1"})
    _fio(person, signer["last_name"], signer["first_name"], signer.get("middle_name"))


def _finish(root: ET.Element, identifier: str) -> tuple[str, bytes]:
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="windows-1251", xml_declaration=False)
    return f"{identifier}.xml", b'<?xml version="1.0" encoding="windows-1251"?>\n' + body


def advance_rate(rate: int) -> str:
    """The calculated rate an advance is taxed at: 22 % → «22/122» (п. 4 ст. 164 НК РФ)."""
    if rate not in VAT_RATES or rate == 0:
        raise ValueError(f"Ставка НДС {rate} % не предусмотрена для аванса")
    return f"{rate}/{100 + rate}"


def build_advance_xml(ctx: Mapping[str, Any]) -> tuple[str, bytes]:
    """The счёт-фактура на аванс in the same exchange format (Функция «СЧФ»): no shipment, the calculated rate.

    Takes the context of ``render.render_advance_pdf`` plus ``created_at``, ``edo`` and ``signer``."""
    root, doc, identifier = _root(ctx, KND, "СЧФ", "Счет-фактура", None, file_id(ctx))
    invoice = ET.SubElement(doc, "СвСчФакт", {"НомерДок": ctx["number"], "ДатаДок": _d(ctx["date"])})
    _participant(invoice, "СвПрод", {**ctx["seller"], "kind": seller_kind(ctx["seller"])})
    for payment in ctx["payment_docs"]:
        attrs = {"НомерПРД": str(payment["number"])[:30], "ДатаПРД": _d(payment["date"])}
        if payment.get("amount") is not None:
            attrs["СуммаПРД"] = money(payment["amount"])
        ET.SubElement(invoice, "СвПРД", attrs)
    _participant(invoice, "СвПокуп", ctx["buyer"])
    ET.SubElement(invoice, "ДенИзм", {"КодОКВ": CURRENCY_CODE, "НаимОКВ": CURRENCY_NAME})
    table = ET.SubElement(doc, "ТаблСчФакт")
    for number, line in enumerate(ctx["lines"], start=1):
        attrs = {"НалСт": advance_rate(ctx["vat"]["rate"]), "СтТовУчНал": money(line["amount"])}
        item = goods_item(table, number, line, attrs)
        ET.SubElement(ET.SubElement(item, "Акциз"), "БезАкциз").text = NO_EXCISE
        _tax(item, "СумНал", False, line["vat_amount"])
    totals = ET.SubElement(table, "ВсегоОпл", {"СтТовУчНалВсего": money(ctx["total"])})
    _tax(totals, "СумНалВсего", False, ctx["vat"]["amount"])
    _signer(doc, ctx["signer"])
    return _finish(root, identifier)
