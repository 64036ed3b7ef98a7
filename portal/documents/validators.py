"""Checks of Russian requisites (ИНН, КПП, ОГРН, ОГРНИП, БИК, bank accounts) by their official rules."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

__all__ = [
    "RequisiteError",
    "normalize_digits",
    "validate_bik",
    "validate_correspondent_account",
    "validate_inn",
    "validate_kpp",
    "validate_ogrn",
    "validate_ogrnip",
    "validate_settlement_account",
]

_INN10_WEIGHTS = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_WEIGHTS_1 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_WEIGHTS_2 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_ACCOUNT_WEIGHTS = (7, 1, 3)
_KPP_RE = re.compile(r"\d{4}[\dA-Z]{2}\d{3}")


class RequisiteError(ValueError):
    """A requisite failed validation; `message` is shown to the user next to `field`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def normalize_digits(value: str) -> str:
    """Drop the spaces people paste into numbers ("7707 083 893", non-breaking spaces included)."""
    return "".join(value.split())


def _digits(value: str, field: str, label: str, lengths: Sequence[int], length_message: str) -> str:
    # str.isdigit() accepts superscripts and other scripts' digits; requisites are ASCII only.
    if not isinstance(value, str) or not value:
        raise RequisiteError(field, f"Укажите {label}")
    if not (value.isascii() and value.isdigit()):
        raise RequisiteError(field, f"{label} должен состоять только из цифр")
    if len(value) not in lengths:
        raise RequisiteError(field, length_message)
    return value


def _weighted_sum(digits: str, weights: Sequence[int]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True))


def _inn_check_digit(digits: str, weights: Sequence[int]) -> int:
    return _weighted_sum(digits, weights) % 11 % 10


def validate_inn(value: str, kind: Literal["org", "ip"]) -> None:
    """ИНН of an organisation (10 digits) or of a sole proprietor (12 digits), with check digits."""
    if kind == "org":
        length, other = 10, "ИНН организации должен состоять из 10 цифр (12 цифр — у ИНН ИП)"
    elif kind == "ip":
        length, other = 12, "ИНН ИП должен состоять из 12 цифр (10 цифр — у ИНН организации)"
    else:
        raise ValueError(f"unknown INN kind: {kind!r}")
    _digits(value, "inn", "ИНН", (10, 12), "ИНН должен состоять из 10 цифр (организация) или 12 цифр (ИП)")
    if len(value) != length:
        raise RequisiteError("inn", other)
    if kind == "org":
        ok = _inn_check_digit(value[:9], _INN10_WEIGHTS) == int(value[9])
    else:
        ok = _inn_check_digit(value[:10], _INN12_WEIGHTS_1) == int(value[10])
        ok = ok and _inn_check_digit(value[:11], _INN12_WEIGHTS_2) == int(value[11])
    if not ok:
        raise RequisiteError("inn", "Неверное контрольное число ИНН")


def validate_kpp(value: str) -> None:
    """КПП: 9 characters, the 5th and 6th may be capital Latin letters."""
    if not value:
        raise RequisiteError("kpp", "Укажите КПП")
    if len(value) != 9:
        raise RequisiteError("kpp", "КПП должен состоять из 9 символов")
    if not (value.isascii() and _KPP_RE.fullmatch(value)):
        raise RequisiteError(
            "kpp", "Неверный формат КПП: 9 цифр, 5-й и 6-й символы могут быть заглавными латинскими буквами"
        )


def validate_ogrn(value: str) -> None:
    """ОГРН of an organisation: 13 digits, the last one is (first 12 mod 11) mod 10."""
    _digits(value, "ogrn", "ОГРН", (13,), "ОГРН должен состоять из 13 цифр")
    if int(value[:12]) % 11 % 10 != int(value[12]):
        raise RequisiteError("ogrn", "Неверное контрольное число ОГРН")


def validate_ogrnip(value: str) -> None:
    """ОГРНИП of a sole proprietor: 15 digits, the last one is the last digit of (first 14 mod 13)."""
    _digits(value, "ogrnip", "ОГРНИП", (15,), "ОГРНИП должен состоять из 15 цифр")
    if int(value[:14]) % 13 % 10 != int(value[14]):
        raise RequisiteError("ogrnip", "Неверное контрольное число ОГРНИП")


def validate_bik(value: str) -> None:
    """БИК: 9 digits (no check digit exists; the key lives in the accounts checked against it)."""
    _digits(value, "bik", "БИК", (9,), "БИК должен состоять из 9 цифр")


def _account_key_ok(digits: str) -> bool:
    weights = _ACCOUNT_WEIGHTS * (len(digits) // 3 + 1)
    return _weighted_sum(digits, weights[: len(digits)]) % 10 == 0


def validate_settlement_account(account: str, bik: str) -> None:
    """Расчётный счёт: 20 digits whose key matches the bank's БИК."""
    _digits(account, "account_number", "Расчётный счёт", (20,), "Расчётный счёт должен состоять из 20 цифр")
    validate_bik(bik)
    if not _account_key_ok(bik[-3:] + account):
        raise RequisiteError("account_number", "Неверный расчётный счёт: контрольный ключ не сходится с БИК банка")


def validate_correspondent_account(account: str, bik: str) -> None:
    """Корреспондентский счёт: 20 digits starting with 301, key checked with the БИК's digits 5–6."""
    _digits(
        account,
        "correspondent_account",
        "Корреспондентский счёт",
        (20,),
        "Корреспондентский счёт должен состоять из 20 цифр",
    )
    if not account.startswith("301"):
        raise RequisiteError("correspondent_account", "Корреспондентский счёт должен начинаться с 301")
    validate_bik(bik)
    if not _account_key_ok("0" + bik[4:6] + account):
        raise RequisiteError(
            "correspondent_account",
            "Неверный корреспондентский счёт: контрольный ключ не сходится с БИК банка",
        )
