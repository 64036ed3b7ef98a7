"""Checks of Russian requisites (ИНН, КПП, ОГРН, ОГРНИП, БИК, bank accounts) by their official rules."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from portal.textinput import strip_separators

__all__ = [
    "RequisiteError",
    "is_bank_of_russia_bik",
    "is_single_treasury_account",
    "is_treasury_account",
    "normalize_digits",
    "split_ip_name",
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
    """Drop the spaces and dashes people paste into numbers ("7707 083 893", "40702-810-…", NBSP included)."""
    return strip_separators(value)


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
    # Zeros weigh nothing, so every check digit comes out 0 and an all-zero ИНН passes the sums above; the FNS
    # schema (ИННЮЛТип/ИННФЛТип) refuses it, so it must be refused here, where the person can still fix it.
    if value.count("0") == len(value):
        raise RequisiteError("inn", "ИНН не может состоять из одних нулей")


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
    # Fits the pattern, but the FNS schema (КППТип) refuses it: the УПД would fail long after the form was saved.
    if value == "000000000":
        raise RequisiteError("kpp", "КПП не может состоять из одних нулей")


# A sole proprietor's name as people write it: «ИП Соколов Сергей Викторович», «Индивидуальный предприниматель
# Соколов Сергей». The УПД carries the ФИО split into Фамилия/Имя/Отчество (СвИП/ФИО), so the name must hold at
# least a surname and a first name written out; initials («ИП Соколов С. В.») cannot be told apart reliably.
_IP_PREFIXES = ("индивидуальный предприниматель ", "ип ")
IP_FULL_NAME_MESSAGE = "Укажите ФИО полностью: ИП Соколов Сергей Викторович"


def split_ip_name(name: str) -> tuple[str, str, str | None]:
    """«ИП Фамилия Имя [Отчество]» → (surname, first name, patronymic or None); RequisiteError("name") otherwise."""
    text = " ".join(str(name).split())
    for prefix in _IP_PREFIXES:
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
            break
    else:
        if text.lower() in ("ип", "индивидуальный предприниматель"):
            text = ""
    words = text.split()
    if len(words) < 2 or any("." in word or len(word) < 2 for word in words[:2]):
        raise RequisiteError("name", IP_FULL_NAME_MESSAGE)
    return words[0], words[1], " ".join(words[2:]) or None


# The first digit of a state registration number says what the record is (Правила ведения ЕГРЮЛ, утв.
# постановлением Правительства РФ от 19.06.2002 № 438, п. 8; Правила ведения ЕГРИП, утв. постановлением от
# 16.10.2003 № 630): 1 or 5 — ОГРН of a legal entity, 2, 6, 7, 8, 9 — ГРН of a later record about it, 3 — ОГРНИП,
# 4 — ГРНИП of a later record about a sole proprietor. The check digit is tested first, so a mistyped digit is
# reported as a typo rather than as a number of the wrong kind.
_OGRN_FIRST_DIGITS = "15"
_OGRNIP_FIRST_DIGITS = "3"
_FIRST_DIGIT_MEANS = {
    "0": "такого номера записи не бывает",
    "2": "это ГРН записи об изменениях, а не ОГРН",
    "3": "это ОГРНИП индивидуального предпринимателя",
    "4": "это ГРНИП записи об изменениях, а не ОГРНИП",
    "6": "это ГРН записи об изменениях, а не ОГРН",
    "7": "это ГРН записи об изменениях, а не ОГРН",
    "8": "это ГРН записи об изменениях, а не ОГРН",
    "9": "это ГРН записи об изменениях, а не ОГРН",
    "1": "это ОГРН организации",
    "5": "это ОГРН организации",
}


def validate_ogrn(value: str) -> None:
    """ОГРН of an organisation: 13 digits, first 1 or 5, the last one is (first 12 mod 11) mod 10."""
    _registration_number(value, "ogrn", "ОГРН", "ОГРН организации", 13, _OGRN_FIRST_DIGITS, "1 или 5")


def validate_ogrnip(value: str) -> None:
    """ОГРНИП of a sole proprietor: 15 digits, first 3, the last one is the last digit of (first 14 mod 13)."""
    _registration_number(value, "ogrnip", "ОГРНИП", "ОГРНИП", 15, _OGRNIP_FIRST_DIGITS, "3")


def _registration_number(
    value: str, field: str, title: str, whose: str, length: int, first_digits: str, first_text: str
) -> None:
    """A state registration number: `length` digits whose last is (the others mod `length` − 2) mod 10."""
    _digits(value, field, title, (length,), f"{title} должен состоять из {length} цифр")
    if int(value[:-1]) % (length - 2) % 10 != int(value[-1]):
        raise RequisiteError(field, f"Неверное контрольное число {title}")
    if value[0] not in first_digits:
        raise RequisiteError(
            field, f"{whose} начинается с {first_text}, а этот номер — с {value[0]}: {_FIRST_DIGIT_MEANS[value[0]]}"
        )


def validate_bik(value: str) -> None:
    """БИК: 9 digits (no check digit exists; the key lives in the accounts checked against it)."""
    _digits(value, "bik", "БИК", (9,), "БИК должен состоять из 9 цифр")


# --- bank accounts ---------------------------------------------------------------------------------
#
# The control key (the 9th digit of a 20-digit account) follows Положение Банка России от 08.09.1997 № 515
# «О порядке расчёта контрольного ключа в номере лицевого счёта»: the 3-digit conditional number of the
# institution that keeps the account, then the 20 digits, weights 7, 1, 3 repeated; the lowest digits of the
# products must sum to a multiple of 10. The conditional number is
#   - for an account kept by a credit institution: БИК digits 7–9 (Sber: 044525225 → "225");
#   - for an account kept by a Bank of Russia unit (its РКЦ, отделение, ГУ): "0" + БИК digits 5–6 (044525000 →
#     "025"). A bank's correspondent account (301…) and a treasury body's single treasury account (ЕКС, 40102…)
#     are such accounts, so they are keyed this way whatever БИК the customer's requisites name: 004525988
#     (ГУ Банка России по ЦФО//УФК по г. Москве) → "025", which keys ЕКС 40102810545370000003.
# A Bank of Russia unit is told by its own БИК: digits 7–9 are 000 (РКЦ, ГУ), 001 (ГРКЦ and the units doing its
# work, e.g. «Отделение 1 Москва» 044583001) or 002 (other units, e.g. ОПЕРУ-1 044501002); credit institutions
# and their branches get 050–999 (the БИК structure of Положение Банка России 2003 г. № 225-П «Справочник БИК
# РФ»). Treasury bodies' БИКs since 2021 (004525988) end in 9xx: they are not Bank of Russia units.
#
# Treasury accounts (казначейские счета, 03…) are kept by the Federal Treasury's bodies since 2021 (Порядок
# открытия казначейских счетов, приказ Казначейства России от 01.04.2020 № 15н): digits 1–5 the kind of account
# (03100 revenue, 03211/03212 federal, 03221/03222 regional, 03231/03232 local budgets, 03214, 03215, 03241…
# funds and escrow-like kinds), 6–8 the currency (643), 9–16 a serial, 17–20 the treasury body's code. They
# carry no control key of the 515 kind: 03100643000000017300 (УФК по г. Москве) fits neither conditional
# number of its БИК 004525988. So they are checked by structure only, and tied to their bank by the ЕКС that
# must stand as the correspondent account. We check "03" and the rouble code, not the list of kinds, because
# the list is amended by the Treasury more often than this code would be.

_BANK_OF_RUSSIA_UNITS = ("000", "001", "002")
_CORRESPONDENT_PREFIXES = ("301", "40102")
_TREASURY_PREFIX = "03"
_SINGLE_TREASURY_PREFIX = "40102"
_ROUBLE = "643"


def is_bank_of_russia_bik(bik: str) -> bool:
    """True for the БИК of a Bank of Russia unit (its accounts are keyed with "0" + БИК digits 5–6)."""
    return len(bik) == 9 and bik.isascii() and bik.isdigit() and bik[6:9] in _BANK_OF_RUSSIA_UNITS


def is_treasury_account(account: str) -> bool:
    """A казначейский счёт (03…), kept by a body of the Federal Treasury."""
    return account.startswith(_TREASURY_PREFIX)


def is_single_treasury_account(account: str) -> bool:
    """A единый казначейский счёт (ЕКС, 40102…): a treasury body's account at the Bank of Russia."""
    return account.startswith(_SINGLE_TREASURY_PREFIX)


def _account_key_ok(digits: str) -> bool:
    weights = _ACCOUNT_WEIGHTS * (len(digits) // 3 + 1)
    return _weighted_sum(digits, weights[: len(digits)]) % 10 == 0


def _bank_of_russia_key_ok(account: str, bik: str) -> bool:
    return _account_key_ok("0" + bik[4:6] + account)


def validate_settlement_account(account: str, bik: str, correspondent_account: str | None = None) -> None:
    """Расчётный (or казначейский) счёт: 20 digits keyed with the БИК by the rule of whoever keeps the account.

    With ``correspondent_account`` the pair is checked too: a treasury account goes with an ЕКС, and only with one.
    """
    _digits(account, "account_number", "Расчётный счёт", (20,), "Расчётный счёт должен состоять из 20 цифр")
    validate_bik(bik)
    if is_treasury_account(account):
        if account[5:8] != _ROUBLE:
            raise RequisiteError(
                "account_number",
                "Неверный казначейский счёт: в 6–8-й цифрах должен стоять код рубля 643, например 03100643000000017300",
            )
        if correspondent_account and not is_single_treasury_account(correspondent_account):
            raise RequisiteError(
                "account_number",
                "Казначейский счёт (03…) открыт в органе Федерального казначейства: корреспондентским счётом "
                "для него указывают единый казначейский счёт (40102…), а не счёт банка",
            )
        return
    if correspondent_account and is_single_treasury_account(correspondent_account):
        raise RequisiteError(
            "account_number",
            "С единым казначейским счётом (40102…) указывают казначейский счёт, начинающийся с 03",
        )
    if is_bank_of_russia_bik(bik):
        if not _bank_of_russia_key_ok(account, bik):
            raise RequisiteError(
                "account_number",
                "Неверный счёт: контрольный ключ не сходится с БИК подразделения Банка России",
            )
        return
    if not _account_key_ok(bik[-3:] + account):
        raise RequisiteError("account_number", "Неверный расчётный счёт: контрольный ключ не сходится с БИК банка")


def validate_correspondent_account(account: str, bik: str) -> None:
    """Корр. счёт: a bank's account at the Bank of Russia (301…) or an ЕКС (40102…), keyed with БИК digits 5–6.

    An account kept by a Bank of Russia unit itself has no correspondent account: leave it empty then.
    """
    if not account and is_bank_of_russia_bik(bik):
        return
    _digits(
        account,
        "correspondent_account",
        "Корреспондентский счёт",
        (20,),
        "Корреспондентский счёт должен состоять из 20 цифр",
    )
    if not account.startswith(_CORRESPONDENT_PREFIXES):
        raise RequisiteError(
            "correspondent_account",
            "Корреспондентский счёт должен начинаться с 301 (счёт банка в Банке России) "
            "или с 40102 (единый казначейский счёт)",
        )
    validate_bik(bik)
    if not _bank_of_russia_key_ok(account, bik):
        raise RequisiteError(
            "correspondent_account",
            "Неверный корреспондентский счёт: контрольный ключ не сходится с БИК банка",
        )
