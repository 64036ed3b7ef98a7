"""The electronic УКД: «информация продавца» of the corrective document (ON_NKORSCHFDOPPR, КНД 1115133, 5.03).

Built with the same helpers as the УПД (participants, signer, windows-1251 output). The FNS schema of the УКД was not
among the reference schemas this project has (`shared/xsd` holds the УПД's), so the element and attribute names
follow the published description of the format (СвКСчФ with the corrected document in СчФ, ТаблКСчФ with «до»,
«после» and the decrease per line, СодФХЖ3 with the basis of the change); the tests check its content and
well-formedness, and the УКД's own schema should be added to them once it is at hand.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from portal.documents.upd_xml import (
    CURRENCY_CODE,
    NO_EXCISE,
    NO_VAT,
    _d,
    _finish,
    _participant,
    _requisites,
    _root,
    _signer,
    _vat_rate,
    file_id,
    goods_item,
    money,
    seller_kind,
)

KND = "1115133"
FILE_PREFIX = "ON_NKORSCHFDOPPR"
FACT_NAME = (
    "Документ об изменении стоимости отгруженных товаров (выполненных работ, оказанных услуг), "
    "переданных имущественных прав"
)
DOC_NAME_BY_FUNCTION = {
    "КСЧФДИС": "Корректировочный счет-фактура и документ об изменении стоимости отгруженных товаров (выполненных "
    "работ, оказанных услуг), переданных имущественных прав",
    "ДИС": FACT_NAME,
}
DEFAULT_OPERATION = "Изменение стоимости прав на использование программы для ЭВМ в связи с досрочным прекращением"


def ukd_function(ctx: Mapping[str, Any]) -> str:
    """«КСЧФДИС» (status 1: VAT charged) or «ДИС» (status 2)."""
    return "ДИС" if ctx["vat"]["exempt"] else "КСЧФДИС"


def _tax(parent: ET.Element, tag: str, exempt: bool, kopecks: int) -> None:
    node = ET.SubElement(parent, tag)
    if exempt:
        ET.SubElement(node, "БезНДС").text = NO_VAT
    else:
        ET.SubElement(node, "СумНДС").text = money(kopecks)


def _cost_change(item: ET.Element, tag: str, line: Mapping[str, Any], key: str) -> None:
    """A line's cost `key` before the change, after it, and the decrease."""
    before, after, decrease = line["before"][key], line["after"][key], line["decrease"][key]
    ET.SubElement(item, tag, {"СтоимДоИзм": money(before), "СтоимПослеИзм": money(after), "СтоимУм": money(decrease)})


def build_ukd_xml(ctx: Mapping[str, Any]) -> tuple[str, bytes]:
    """Build the УКД exchange file from the context of ``render.render_ukd_pdf``; ``(file name, bytes)``."""
    function = ukd_function(ctx)
    exempt = bool(ctx["vat"]["exempt"])
    rate = _vat_rate(ctx)
    identifier = FILE_PREFIX + file_id(ctx).removeprefix("ON_NSCHFDOPPR")
    root, doc, identifier = _root(ctx, KND, function, DOC_NAME_BY_FUNCTION[function], FACT_NAME, identifier)

    head = ET.SubElement(
        doc, "СвКСчФ", {"НомерКСчФ": ctx["number"], "ДатаКСчФ": _d(ctx["date"]), "КодОКВ": CURRENCY_CODE}
    )
    ET.SubElement(head, "СчФ", {"НомерСчФ": ctx["upd"]["number"], "ДатаСчФ": _d(ctx["upd"]["date"])})
    _participant(head, "СвПрод", {**ctx["seller"], "kind": seller_kind(ctx["seller"])})
    _participant(head, "СвПокуп", ctx["buyer"])

    table = ET.SubElement(doc, "ТаблКСчФ")
    for number, line in enumerate(ctx["lines"], start=1):
        before, after, decrease = line["before"], line["after"], line["decrease"]
        item = goods_item(
            table,
            number,
            line,
            {
                "ОКЕИ_ТовДо": line["unit_code"],
                "ОКЕИ_ТовПосле": line["unit_code"],
                "КолТовДо": str(line["quantity"]),
                "КолТовПосле": str(line["quantity"]),
                "ЦенаТовДо": money(before["price"]),
                "ЦенаТовПосле": money(after["price"]),
                "НалСтДо": rate,
                "НалСтПосле": rate,
            },
        )
        _cost_change(item, "СтТовБезНДС", line, "amount_without_vat")
        for tag in ("АкцизДо", "АкцизПосле"):
            ET.SubElement(ET.SubElement(item, tag), "БезАкциз").text = NO_EXCISE
        _tax(item, "СумНалДо", exempt, before["vat_amount"])
        _tax(item, "СумНалПосле", exempt, after["vat_amount"])
        difference = ET.SubElement(item, "РазСумНал")
        if exempt:
            ET.SubElement(difference, "БезНДС").text = NO_VAT
        else:
            ET.SubElement(difference, "СумУм").text = money(decrease["vat_amount"])
        _cost_change(item, "СтТовУчНал", line, "amount")
    total = ctx["total_decrease"]
    totals = ET.SubElement(
        table,
        "ВсегоУм",
        {"СтТовБезНДСВсего": money(total["amount_without_vat"]), "СтТовУчНалВсего": money(total["amount"])},
    )
    _tax(totals, "СумНал", exempt, total["vat_amount"])

    content = ET.SubElement(
        doc, "СодФХЖ3", {"СодОпер": ctx.get("operation") or DEFAULT_OPERATION, "ДатаНапр": _d(ctx["notice_date"])}
    )
    _requisites(
        content, "ПередатДокум", "Универсальный передаточный документ", ctx["upd"]["number"], ctx["upd"]["date"]
    )
    basis = ctx["basis"]
    _requisites(content, "ДокумОснКор", basis["name"], basis["number"], basis["date"])
    _signer(doc, ctx["signer"])
    return _finish(root, identifier)
