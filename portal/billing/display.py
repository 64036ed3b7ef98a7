"""How billing figures read in Russian: storage sizes and periods."""

from __future__ import annotations

from portal.billing.catalog import ALLOWED_MONTHS, GB, TB
from portal.money import group_thousands
from portal.wording import plural_ru

MB = 1024**2


def _decimal(value: int, unit: int) -> str:
    """value / unit with one decimal, comma-separated, trailing ",0" dropped."""
    tenths = (value * 10 + unit // 2) // unit
    whole, frac = divmod(tenths, 10)
    return group_thousands(whole) + (f",{frac}" if frac else "")


def format_storage(n_bytes: int) -> str:
    """5368709120 → «5 ГБ», 1099511627776 → «1 ТБ», 1395864371 → «1,3 ГБ» (1 ГБ = 1024³ байт)."""
    n_bytes = int(n_bytes or 0)
    if n_bytes >= TB:
        return f"{_decimal(n_bytes, TB)}\u00a0ТБ"
    if n_bytes >= GB:
        return f"{_decimal(n_bytes, GB)}\u00a0ГБ"
    if n_bytes >= MB:
        return f"{_decimal(n_bytes, MB)}\u00a0МБ"
    if n_bytes == 0:
        return "0\u00a0ГБ"
    return "меньше 1\u00a0МБ"


def months_ru(n: int) -> str:
    """«6 месяцев», «1 месяц», «24 месяца»."""
    return f"{n}\u00a0{plural_ru(n, 'месяц', 'месяца', 'месяцев')}"


def users_word(n: int) -> str:
    """«пользователь», «пользователя», «пользователей» for n."""
    return plural_ru(n, "пользователь", "пользователя", "пользователей")


def users_ru(n: int) -> str:
    return f"{n} {users_word(n)}"


def users_upto_ru(n: int) -> str:
    """«до 24 пользователей», «до 21 пользователя»: после «до» — родительный падеж."""
    return f"до {n} {plural_ru(n, 'пользователя', 'пользователей', 'пользователей')}"


def days_ru(n: int) -> str:
    return f"{n} {plural_ru(n, 'день', 'дня', 'дней')}"


def allowed_months_ru() -> str:
    """«6, 9, 12 или 24 месяца» — the offered periods, as a sentence says them."""
    *head, last = ALLOWED_MONTHS
    return f"{', '.join(str(m) for m in head)} или {months_ru(last)}"
