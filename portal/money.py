"""Money as integer kopecks: formatting the Russian way, and exact rounding."""

from __future__ import annotations

NBSP = "\u00a0"


def group_thousands(n: int) -> str:
    """1234567 → '1 234 567' with non-breaking spaces, as Russian typography groups digits."""
    s = str(abs(n))
    parts = []
    while len(s) > 3:
        parts.insert(0, s[-3:])
        s = s[:-3]
    parts.insert(0, s)
    return ("-" if n < 0 else "") + NBSP.join(parts)


def format_amount(kopecks: int) -> str:
    """199000 → '1 990,00' (no currency sign)."""
    if not isinstance(kopecks, int):
        raise TypeError("money must be integer kopecks")
    sign = "-" if kopecks < 0 else ""
    rub, kop = divmod(abs(kopecks), 100)
    return f"{sign}{group_thousands(rub)},{kop:02d}"


def format_rub(kopecks: int) -> str:
    """199000 → '1 990,00 ₽'."""
    return f"{format_amount(kopecks)}{NBSP}₽"


def kopecks_to_decimal_str(kopecks: int) -> str:
    """846450 → '8464.50' for machine formats (XML, QR, statements)."""
    sign = "-" if kopecks < 0 else ""
    rub, kop = divmod(abs(kopecks), 100)
    return f"{sign}{rub}.{kop:02d}"
