"""Banking days of the Russian production calendar: how long an invoice stays valid."""

from __future__ import annotations

from datetime import date, timedelta

# Non-working weekdays and working weekends by year, from the government's decrees on moving days off
# (2025: постановление № 1335 от 04.10.2024; 2026: постановление № 1466 от 24.09.2025). Kept as data so
# that next year's decree is one new entry, not a code change.
NON_WORKING_WEEKDAYS: dict[int, frozenset[date]] = {
    2025: frozenset(
        date(2025, m, d)
        for m, d in (
            (1, 1),
            (1, 2),
            (1, 3),
            (1, 6),
            (1, 7),
            (1, 8),
            (5, 1),
            (5, 2),
            (5, 8),
            (5, 9),
            (6, 12),
            (6, 13),
            (11, 3),
            (11, 4),
            (12, 31),
        )
    ),  # fmt: skip
    2026: frozenset(
        date(2026, m, d)
        for m, d in (
            (1, 1),
            (1, 2),
            (1, 5),
            (1, 6),
            (1, 7),
            (1, 8),
            (1, 9),
            (2, 23),
            (3, 9),
            (5, 1),
            (5, 11),
            (6, 12),
            (11, 4),
            (12, 31),
        )
    ),  # fmt: skip
}
WORKING_WEEKENDS: dict[int, frozenset[date]] = {
    2025: frozenset({date(2025, 11, 1)}),
    2026: frozenset(),
}

# For a year whose decree is not in the data yet: the public holidays of ст. 112 ТК РФ, without the moves.
_FIXED_HOLIDAYS = (
    (1, 1),
    (1, 2),
    (1, 3),
    (1, 4),
    (1, 5),
    (1, 6),
    (1, 7),
    (1, 8),
    (2, 23),
    (3, 8),
    (5, 1),
    (5, 9),
    (6, 12),
    (11, 4),
)


def is_banking_day(day: date) -> bool:
    """Banks settle transfers on working days of the production calendar."""
    year = day.year
    if year in NON_WORKING_WEEKDAYS:
        if day in WORKING_WEEKENDS.get(year, frozenset()):
            return True
        return day.weekday() < 5 and day not in NON_WORKING_WEEKDAYS[year]
    return day.weekday() < 5 and (day.month, day.day) not in _FIXED_HOLIDAYS


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
