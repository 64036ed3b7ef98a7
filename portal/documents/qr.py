"""Payment QR codes by ГОСТ Р 56042-2014, printed on invoices so a bank app can fill in the transfer."""

from __future__ import annotations

import struct
import zlib

import segno

from portal.documents.validators import (
    RequisiteError,
    normalize_digits,
    validate_bik,
    validate_correspondent_account,
    validate_inn,
    validate_kpp,
    validate_settlement_account,
)

__all__ = ["payment_payload", "qr_png", "qr_svg_data_uri"]

# "ST0001" is the format id, the digit after it the character set: 1 windows-1251, 2 UTF-8, 3 KOI8-R.
_HEADER = "ST00012"


def _clean(value: str) -> str:
    # "|" separates fields and a line break ends the payload in some readers, so neither may stay in a value.
    return " ".join(value.replace("|", "/").split())


def _required_text(field: str, value: str, label: str) -> str:
    cleaned = _clean(value or "")
    if not cleaned:
        raise RequisiteError(field, f"Укажите {label}")
    return cleaned


def payment_payload(
    *,
    name: str,
    personal_acc: str,
    bank_name: str,
    bic: str,
    corresp_acc: str,
    payee_inn: str,
    kpp: str | None,
    sum_kopecks: int,
    purpose: str,
) -> str:
    """The QR text: payee, bank, amount in kopecks and purpose; requisites are checked, not trusted.

    `kpp` may be empty for a sole proprietor (who has none); then the KPP field is left out.
    """
    name = _required_text("name", name, "наименование получателя")
    bank_name = _required_text("bank_name", bank_name, "наименование банка")
    purpose = _required_text("purpose", purpose, "назначение платежа")
    bic = normalize_digits(bic or "")
    personal_acc = normalize_digits(personal_acc or "")
    corresp_acc = normalize_digits(corresp_acc or "")
    payee_inn = normalize_digits(payee_inn or "")
    kpp = normalize_digits(kpp or "")
    validate_bik(bic)
    validate_settlement_account(personal_acc, bic)
    validate_correspondent_account(corresp_acc, bic)
    validate_inn(payee_inn, "ip" if len(payee_inn) == 12 else "org")
    if kpp:
        validate_kpp(kpp)
    if isinstance(sum_kopecks, bool) or not isinstance(sum_kopecks, int):
        raise TypeError("sum_kopecks must be an int")
    if sum_kopecks <= 0:
        raise RequisiteError("sum", "Сумма платежа должна быть больше нуля")

    fields = [
        ("Name", name),
        ("PersonalAcc", personal_acc),
        ("BankName", bank_name),
        ("BIC", bic),
        ("CorrespAcc", corresp_acc),
        ("PayeeINN", payee_inn),
    ]
    if kpp:
        fields.append(("KPP", kpp))
    fields += [("Sum", str(sum_kopecks)), ("Purpose", purpose)]
    return "|".join([_HEADER, *(f"{key}={value}" for key, value in fields)])


# Segno otherwise builds and scores all eight data masks to keep the best one: about three quarters of a QR code's
# cost. The score only avoids patterns that confuse poor scanners; every mask decodes to the same text (the tests
# decode it back), and bank apps read a printed A4 invoice at close range.
_MASK = 0


def _make(payload: str) -> segno.QRCode:
    # Fixed level M (no boosting) and a fixed mask keep the symbol the same for the same payload; no ECI marker,
    # because the ST00012 header already tells bank apps the text is UTF-8.
    return segno.make_qr(payload, error="m", encoding="utf-8", boost_error=False, mask=_MASK)


def qr_png(payload: str, *, scale: int = 4) -> bytes:
    """The QR code as PNG bytes, with the standard 4-module quiet zone."""
    return _png(_make(payload).matrix, scale=scale, border=4)


# A module's pixel bit in a one-bit greyscale PNG: 0 is black (a dark module), 1 white.
_BITS = bytes.maketrans(b"\x00\x01", b"10")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(matrix: tuple[bytearray, ...], *, scale: int, border: int) -> bytes:
    """A one-bit greyscale PNG of the symbol's modules, `scale` pixels each.

    Segno's own PNG writer builds every row pixel by pixel in Python, about a fifth of an invoice's QR code; here a
    row of modules becomes a string of bits and one integer in a few C calls.
    """
    modules = len(matrix) + 2 * border
    side = modules * scale
    pad = -side % 8  # each PNG row is whole bytes; the padding bits are not pixels
    quiet = b"\x00" * border
    light_row = b"\x00" + int("1" * side + "0" * pad, 2).to_bytes((side + pad) // 8, "big")
    rows = [light_row] * (border * scale)
    for row in matrix:
        bits = (quiet + bytes(row) + quiet).translate(_BITS).decode("ascii")
        if scale > 1:
            bits = "".join(bit * scale for bit in bits)
        rows += [b"\x00" + int(bits + "0" * pad, 2).to_bytes((side + pad) // 8, "big")] * scale
    rows += [light_row] * (border * scale)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # one bit per pixel, greyscale, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(b"".join(rows), 9)),
            _chunk(b"IEND", b""),
        )
    )


def qr_svg_data_uri(payload: str, *, scale: int = 4) -> str:
    """The QR code as an SVG `data:` URI, to put straight into an <img src> of an HTML or PDF page."""
    return _make(payload).svg_data_uri(scale=scale, border=4)
