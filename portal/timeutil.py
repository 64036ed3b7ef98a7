"""Moscow calendar dates for billing, UTC instants for storage."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from babel.dates import format_date as babel_format_date

from portal.wording import RU

MSK = ZoneInfo("Europe/Moscow")


def msk_date(moment: datetime) -> date:
    """The Moscow calendar date of an aware instant."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(MSK).date()


def msk_midnight(day: date) -> datetime:
    """The UTC instant at which a Moscow calendar day starts."""
    return datetime.combine(day, time.min, tzinfo=MSK).astimezone(UTC)


def format_date_ru(day: date | datetime, *, space: str = " ") -> str:
    """«25 ноября 2026 г.»: the month in the genitive, from CLDR through Babel. Documents pass a no-break `space`
    (between the day and the month, and before «г.»)."""
    if isinstance(day, datetime):
        day = msk_date(day)
    return babel_format_date(day, f"d{space}MMMM y{space}'г.'", locale=RU)


def format_month_ru(day: date) -> str:
    """«ноябрь 2026»: a month named on its own (the nominative), as a period's title."""
    return babel_format_date(day, "LLLL y", locale=RU)


def format_date(day: date | datetime) -> str:
    """«25.11.2026»"""
    if isinstance(day, datetime):
        day = msk_date(day)
    return day.strftime("%d.%m.%Y")


def format_datetime(moment: datetime) -> str:
    """«25.11.2026 14:05» in Moscow time."""
    return moment.astimezone(MSK).strftime("%d.%m.%Y %H:%M")
