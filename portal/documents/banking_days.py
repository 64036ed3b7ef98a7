"""Banking days of the Russian production calendar: how long an invoice stays valid."""

from __future__ import annotations

from datetime import date, timedelta

# Non-working weekdays and working weekends by year («ММ-ДД»), from the government's yearly decree on moving
# days off. Kept as data, so that next year's decree is one new line, not a code change.
_NON_WORKING = {
    2025: "01-01 01-02 01-03 01-06 01-07 01-08 05-01 05-02 05-08 05-09 06-12 06-13 11-03 11-04 12-31",
    2026: "01-01 01-02 01-05 01-06 01-07 01-08 01-09 02-23 03-09 05-01 05-11 06-12 11-04 12-31",
}
_WORKING_WEEKENDS = {
    2025: "11-01",
    2026: "",
}


def _dates(year: int, days: str) -> frozenset[date]:
    return frozenset(date(year, int(d[:2]), int(d[3:])) for d in days.split())


NON_WORKING_WEEKDAYS: dict[int, frozenset[date]] = {y: _dates(y, d) for y, d in _NON_WORKING.items()}
WORKING_WEEKENDS: dict[int, frozenset[date]] = {y: _dates(y, d) for y, d in _WORKING_WEEKENDS.items()}

# For a year whose decree is not in the data yet: the public holidays of ст. 112 ТК РФ, without the moves.
_FIXED_HOLIDAYS = frozenset(
    _dates(2000, "01-01 01-02 01-03 01-04 01-05 01-06 01-07 01-08 02-23 03-08 05-01 05-09 06-12 11-04")
)


def is_banking_day(day: date) -> bool:
    """Banks settle transfers on working days of the production calendar."""
    year = day.year
    if year in NON_WORKING_WEEKDAYS:
        if day in WORKING_WEEKENDS.get(year, frozenset()):
            return True
        return day.weekday() < 5 and day not in NON_WORKING_WEEKDAYS[year]
    return day.weekday() < 5 and day.replace(year=2000) not in _FIXED_HOLIDAYS


def add_banking_days(start: date, days: int) -> date:
    """The `days`-th banking day after `start` (the day of issue itself is not counted)."""
    if days < 1:
        raise ValueError("days must be at least 1")
    day = start
    left = days
    while left:
        day += timedelta(days=1)
        if is_banking_day(day):
            left -= 1
    return day
