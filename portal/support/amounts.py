"""Numbers as support staff type them («29 990,00», «1 500», «2 ТБ») read exactly, in integers, never floats."""

from __future__ import annotations

import re

from portal.billing.catalog import GB, MAX_SELF_SERVICE_SEATS, TB

# Spaces people and spreadsheets put between thousands: plain, no-break, narrow no-break, thin.
_GROUP_SPACES = re.compile(r"[ \u00a0\u202f\u2009]")
_CURRENCY = re.compile(r"\s*(₽|руб\.?|р\.)\s*$", re.IGNORECASE)
_GROUPED = re.compile(r"^\d{1,3}(?: \d{3})+$")

MAX_MONTHLY_PRICE_KOPECKS = 100_000_000 * 100  # 100 million roubles a month: anything above is a typo
MAX_SEATS = 1_000_000
MAX_STORAGE_BYTES = 10_000 * TB
STORAGE_UNITS = {"GB": GB, "TB": TB}
STORAGE_UNIT_TITLES = {"GB": "ГБ", "TB": "ТБ"}


class AmountError(ValueError):
    """The number is not understood or out of range; the message says how to write it."""


def _spaces_normalised(text: str) -> str:
    return _GROUP_SPACES.sub(" ", text.strip())


def _whole(text: str, *, ask: str, name: str, example: str) -> int:
    """Digits with optional thousands spaces («1 500», «1500»); '1 50' or '1,5' are refused, not guessed.

    `ask` finishes «Укажите …», `name` is the number's name as a subject («Число пользователей»).
    """
    text = _spaces_normalised(text)
    if not text:
        raise AmountError(f"Укажите {ask}, например {example}.")
    if text.startswith("-"):
        raise AmountError(f"{name} не может быть отрицательным.")
    digits = text.replace(" ", "")
    if not digits.isascii() or not digits.isdigit():
        raise AmountError(f"{name} — целое число цифрами, например {example}.")
    if " " in text and not _GROUPED.match(text):
        raise AmountError(f"Не понятно число «{text}»: разряды разделяют по три цифры, например {example}.")
    return int(digits)


def parse_rubles(raw: str | None) -> int:
    """«29 990,00», «29990», «29990.5», «29 990 ₽» → kopecks (2999000); no float is ever made."""
    text = _CURRENCY.sub("", _spaces_normalised(raw or ""))
    example = "«29 990,00» или «29990»"
    if not text:
        raise AmountError(f"Укажите цену в месяц в рублях, например {example}.")
    if text.startswith("-"):
        raise AmountError("Цена не может быть отрицательной.")
    whole, sep, frac = text.replace(".", ",").partition(",")
    if sep and "," in frac:
        raise AmountError(
            f"Не понятно число «{text}»: копейки отделяют одной запятой, разряды — пробелами, например {example}."
        )
    if sep and (not frac.isascii() or not frac.isdigit()):
        raise AmountError(f"После запятой — копейки цифрами, например {example}.")
    if len(frac) == 3 and whole.strip().isdigit() and len(whole.strip()) <= 3:
        grouped = f"{whole.strip()} {frac}"
        raise AmountError(
            f"После запятой — не больше двух цифр копеек. Если это {grouped} ₽, напишите «{grouped}»: "
            "разряды разделяют пробелом."
        )
    if len(frac) > 2:
        raise AmountError("Копеек — не больше двух цифр после запятой, например «29 990,50».")
    if not whole.strip():
        raise AmountError(f"Укажите рубли перед запятой, например {example}.")
    whole = whole.strip()
    digits = whole.replace(" ", "")
    if not digits.isascii() or not digits.isdigit():
        raise AmountError(f"Цена — это число рублей цифрами, например {example}.")
    if " " in whole and not _GROUPED.match(whole):
        raise AmountError(f"Не понятно число «{text}»: разряды разделяют по три цифры, например {example}.")
    rubles = int(digits)
    kopecks = rubles * 100 + (int(frac.ljust(2, "0")) if frac else 0)
    if kopecks <= 0:
        raise AmountError("Цена должна быть больше нуля.")
    if kopecks > MAX_MONTHLY_PRICE_KOPECKS:
        raise AmountError("Слишком большая цена в месяц — проверьте число: не больше 100 000 000 ₽.")
    return kopecks


def _over_self_service(raw: str | None, ask: str, too_few: str, too_many: str) -> int:
    """A number of users beyond the published plans (over 1000), within what one account may have."""
    users = _whole(raw or "", ask=ask, name="Число пользователей", example="«1500»")
    if users <= MAX_SELF_SERVICE_SEATS:
        raise AmountError(too_few)
    if users > MAX_SEATS:
        raise AmountError(too_many)
    return users


_CUSTOM_TOO_FEW = (
    f"Индивидуальный тариф — для более чем {MAX_SELF_SERVICE_SEATS} пользователей; "
    "для команды поменьше есть обычные тарифы."
)
_CUSTOM_TOO_MANY = f"Слишком много пользователей — проверьте число: не больше {MAX_SEATS:,}.".replace(",", " ")
_EXPECTED_TOO_FEW = (
    f"Для команды до {MAX_SELF_SERVICE_SEATS} пользователей подойдёт обычный тариф — "
    "его можно выбрать и оплатить на странице «Тарифы»."
)


def parse_seats(raw: str | None) -> int:
    """Seats of a custom plan: more than 1000 (below that the published plans apply)."""
    return _over_self_service(raw, "число пользователей", _CUSTOM_TOO_FEW, _CUSTOM_TOO_MANY)


def parse_storage(raw: str | None, unit: str) -> int:
    """Whole gigabytes or terabytes → bytes (1 ГБ = 1024³ байт)."""
    if unit not in STORAGE_UNITS:
        raise AmountError("Выберите единицу объёма: ГБ или ТБ.")
    amount = _whole(raw or "", ask="объём хранилища", name="Объём хранилища", example="«3» ТБ или «3072» ГБ")
    if amount <= 0:
        raise AmountError("Объём хранилища должен быть больше нуля.")
    size = amount * STORAGE_UNITS[unit]
    if size > MAX_STORAGE_BYTES:
        raise AmountError("Слишком большой объём хранилища — проверьте число: не больше 10 000 ТБ.")
    return size


def parse_users_expected(raw: str | None) -> int:
    """How many users an owner expects when asking for a plan over 1000."""
    return _over_self_service(
        raw, "сколько будет пользователей", _EXPECTED_TOO_FEW, "Слишком большое число — проверьте его."
    )
