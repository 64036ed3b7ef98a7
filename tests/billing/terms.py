"""The vendor's published terms written out by hand, and helpers that compute money from them (not from the code)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from fractions import Fraction
from math import floor
from zoneinfo import ZoneInfo

MSK = ZoneInfo("Europe/Moscow")
GiB = 1024**3
TiB = 1024**4

# code → (users, storage bytes, roubles per month)
PUBLISHED = {
    "users-5": (5, 2 * GiB, 0),
    "users-12": (12, 5 * GiB, 990),
    "users-24": (24, 24 * GiB, 1_990),
    "users-50": (50, 100 * GiB, 4_990),
    "users-200": (200, 300 * GiB, 9_990),
    "users-500": (500, 1 * TiB, 19_990),
    "users-1000": (1000, 2 * TiB, 29_990),
}
DISCOUNT = {6: 0, 9: 5, 12: 7, 24: 10}


def half_up(x: Fraction) -> int:
    return floor(x + Fraction(1, 2))


def kopecks_per_month(code: str) -> int:
    return PUBLISHED[code][2] * 100


def period_total(code: str, months: int) -> int:
    """round_half_up(monthly × months × (100 − discount%) / 100), in kopecks."""
    return half_up(Fraction(kopecks_per_month(code) * months * (100 - DISCOUNT[months]), 100))


def period_discount(code: str, months: int) -> int:
    return kopecks_per_month(code) * months - period_total(code, months)


def upgrade_total(old: str, new: str, months: int, days_left: int, days_total: int) -> int:
    return half_up(Fraction((period_total(new, months) - period_total(old, months)) * days_left, days_total))


def msk(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> datetime:
    """An aware instant given as Moscow wall-clock time, returned in UTC as the code stores it."""
    return datetime.combine(date(y, m, d), time(hh, mm), tzinfo=MSK).astimezone(UTC)


def utc(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=UTC)
