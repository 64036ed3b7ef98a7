"""Moscow calendar dates for billing, UTC instants for storage."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

MSK = ZoneInfo("Europe/Moscow")

MONTHS_GENITIVE = (
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
)


def msk_date(moment: datetime) -> date:
    """The Moscow calendar date of an aware instant."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(MSK).date()


def msk_midnight(day: date) -> datetime:
    """The UTC instant at which a Moscow calendar day starts."""
    return datetime.combine(day, time.min, tzinfo=MSK).astimezone(UTC)


def format_date_ru(day: date | datetime) -> str:
    """«25 ноября 2026 г.»"""
    if isinstance(day, datetime):
        day = msk_date(day)
    return f"{day.day} {MONTHS_GENITIVE[day.month - 1]} {day.year} г."


def format_date(day: date | datetime) -> str:
    """«25.11.2026»"""
    if isinstance(day, datetime):
        day = msk_date(day)
    return day.strftime("%d.%m.%Y")


def format_datetime(moment: datetime) -> str:
    """«25.11.2026 14:05» in Moscow time."""
    return moment.astimezone(MSK).strftime("%d.%m.%Y %H:%M")
