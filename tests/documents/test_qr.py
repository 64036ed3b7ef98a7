"""Payment QR codes (ГОСТ Р 56042-2014): the exact text, and that a reader gets it back from the image."""

from __future__ import annotations

import io
import urllib.parse

import pytest
import zxingcpp
from PIL import Image, ImageChops

from portal.documents import qr
from portal.documents.qr import payment_payload, qr_png, qr_svg_data_uri
from portal.documents.validators import RequisiteError

REQUISITES = {
    "name": 'ООО "Тариф"',
    "personal_acc": "40702810938000000001",
    "bank_name": "ПАО СБЕРБАНК",
    "bic": "044525225",
    "corresp_acc": "30101810400000000225",
    "payee_inn": "7707083893",
    "kpp": "770701001",
    "sum_kopecks": 846_450,
    "purpose": "Оплата по счёту № 2026-000123 от 25.11.2026. Без налога (НДС)",
}


def make_payload(**changes: object) -> str:
    return payment_payload(**{**REQUISITES, **changes})  # type: ignore[arg-type]


def decode_png(png: bytes) -> zxingcpp.Barcode:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(results) == 1
    return results[0]


def test_payload_has_the_gost_fields_in_order() -> None:
    assert make_payload() == (
        'ST00012|Name=ООО "Тариф"|PersonalAcc=40702810938000000001|BankName=ПАО СБЕРБАНК'
        "|BIC=044525225|CorrespAcc=30101810400000000225|PayeeINN=7707083893|KPP=770701001"
        "|Sum=846450|Purpose=Оплата по счёту № 2026-000123 от 25.11.2026. Без налога (НДС)"
    )


def test_separators_and_line_breaks_do_not_leak_into_values() -> None:
    payload = make_payload(name="ООО «Тариф | Плюс»\r\n", purpose="Оплата\nпо счёту|2026-000123\t ")
    assert "|Name=ООО «Тариф / Плюс»|" in payload
    assert payload.endswith("|Purpose=Оплата по счёту/2026-000123")
    assert "\n" not in payload and "\r" not in payload
    assert payload.count("|") == 9


def test_sole_proprietor_without_kpp() -> None:
    payload = make_payload(payee_inn="500100732259", kpp="", name="ИП Ёлкина Юлия Эдуардовна")
    assert "KPP=" not in payload
    assert "|PayeeINN=500100732259|Sum=846450|" in payload


def test_spaces_in_numbers_are_dropped() -> None:
    payload = make_payload(personal_acc="4070 2810 9380 0000 0001", bic=" 044525225")
    assert "|PersonalAcc=40702810938000000001|BankName=ПАО СБЕРБАНК|BIC=044525225|" in payload


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": " \n"}, "name"),
        ({"bank_name": ""}, "bank_name"),
        ({"purpose": "\r\n "}, "purpose"),
        ({"bic": "04452522"}, "bik"),
        ({"personal_acc": "40702810938000000002"}, "account_number"),
        ({"corresp_acc": "30101810400000000226"}, "correspondent_account"),
        ({"payee_inn": "7707083894"}, "inn"),
        ({"payee_inn": ""}, "inn"),
        ({"kpp": "77070100"}, "kpp"),
        ({"sum_kopecks": 0}, "sum"),
        ({"sum_kopecks": -100}, "sum"),
    ],
)
def test_bad_requisites_are_refused(changes: dict[str, object], field: str) -> None:
    with pytest.raises(RequisiteError) as caught:
        make_payload(**changes)
    assert caught.value.field == field


def test_amount_must_be_integer_kopecks() -> None:
    with pytest.raises(TypeError):
        make_payload(sum_kopecks=8464.5)


def test_png_decodes_back_to_the_exact_payload_with_cyrillic() -> None:
    payload = make_payload(name="ООО «Ёлка — Щит & Ъ»")
    png = qr_png(payload)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    barcode = decode_png(png)
    assert barcode.format == zxingcpp.BarcodeFormat.QRCode
    assert barcode.bytes.decode("utf-8") == payload
    assert barcode.text == payload
    assert barcode.ec_level == "M"


@pytest.mark.parametrize("scale", [1, 3, 4])
def test_png_has_the_pixels_of_segnos_own_writer(scale: int) -> None:
    payload = make_payload()
    reference = io.BytesIO()
    qr._make(payload).save(reference, kind="png", scale=scale, border=4)
    expected = Image.open(reference)
    png = Image.open(io.BytesIO(qr_png(payload, scale=scale)))
    assert (png.mode, png.size) == ("1", expected.size)
    assert ImageChops.difference(png.convert("L"), expected.convert("L")).getbbox() is None


def test_long_purpose_still_fits_and_decodes() -> None:
    payload = make_payload(purpose="Оплата лицензии на программу для ЭВМ " * 5)
    assert decode_png(qr_png(payload, scale=3)).bytes.decode("utf-8") == payload


def test_svg_data_uri_is_an_inline_svg_image_of_the_same_code() -> None:
    payload = make_payload()
    uri = qr_svg_data_uri(payload)
    prefix = "data:image/svg+xml;charset=utf-8,"
    assert uri.startswith(prefix)
    svg = urllib.parse.unquote(uri[len(prefix) :])
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    # Same payload, same symbol: the SVG does not change between calls (documents are reproducible).
    assert qr_svg_data_uri(payload) == uri
    assert qr_svg_data_uri(payload + "x") != uri
