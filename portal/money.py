"""Money as integer kopecks: formatting the Russian way, and exact rounding.

Numbers are formatted by Babel with CLDR's `ru` symbols: digits grouped by U+00A0 NO-BREAK SPACE (not the narrow
U+202F some locales use), a comma before kopecks, a hyphen-minus for a negative amount — what pages and documents
have always printed, byte for byte.
"""

from __future__ import annotations

from decimal import Decimal

from babel.numbers import format_decimal

from portal.wording import RU

NBSP = "\u00a0"


def group_thousands(n: int) -> str:
    """1234567 → '1 234 567' with non-breaking spaces, as Russian typography groups digits."""
    return format_decimal(n, "#,##0", locale=RU)


def format_amount(kopecks: int) -> str:
    """199000 → '1 990,00' (no currency sign)."""
    if not isinstance(kopecks, int):
        raise TypeError("money must be integer kopecks")
    # Exact: a Decimal of whole kopecks moved two places, never a float.
    return format_decimal(Decimal(kopecks).scaleb(-2), "#,##0.00", locale=RU)


def format_rub(kopecks: int) -> str:
    """199000 → '1 990,00 ₽'."""
    return f"{format_amount(kopecks)}{NBSP}₽"


def kopecks_to_decimal_str(kopecks: int) -> str:
    """846450 → '8464.50' for machine formats (XML, QR, statements)."""
    sign = "-" if kopecks < 0 else ""
    rub, kop = divmod(abs(kopecks), 100)
    return f"{sign}{rub}.{kop:02d}"
