"""Numbers typed by support staff become exact kopecks and bytes, or a message that says how to write them."""

from __future__ import annotations

import pytest

from portal.billing.catalog import GB, TB
from portal.support.amounts import AmountError, parse_rubles, parse_seats, parse_storage, parse_users_expected


@pytest.mark.parametrize(
    "text, kopecks",
    [
        ("29 990,00", 2_999_000),
        ("29990", 2_999_000),
        ("29\u00a0990,00", 2_999_000),  # no-break space, as copied from a price list
        ("29\u202f990", 2_999_000),
        ("29 990 ₽", 2_999_000),
        ("29990 руб.", 2_999_000),
        ("29990.5", 2_999_050),
        ("29 990,05", 2_999_005),
        ("1 234 567,89", 123_456_789),
        ("0,01", 1),
        ("  45000  ", 4_500_000),
    ],
)
def test_prices_are_read_exactly(text, kopecks):
    value = parse_rubles(text)
    assert value == kopecks and isinstance(value, int)


def test_no_float_rounding_on_awkward_cents():
    # 0.29 * 100 == 28.999999999999996 in floats; the parser never goes near them.
    assert parse_rubles("1 000 000,29") == 100_000_029


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "Укажите цену"),
        ("-100", "не может быть отрицательной"),
        ("0", "больше нуля"),
        ("0,00", "больше нуля"),
        ("двадцать тысяч", "число рублей"),
        ("1e5", "число рублей"),
        ("29,990", "Если это 29 990 ₽, напишите «29 990»"),
        ("29990,505", "не больше двух цифр"),
        ("29.990,00", "одной запятой"),
        ("2 9990", "по три цифры"),
        ("29990,5а", "копейки цифрами"),
        (",50", "рубли перед запятой"),
        ("100 000 001", "Слишком большая цена"),
    ],
)
def test_bad_prices_are_refused_with_a_clear_message(text, words):
    with pytest.raises(AmountError, match=words):
        parse_rubles(text)


def test_seats_over_1000_only():
    assert parse_seats("1 500") == 1500
    assert parse_seats("1001") == 1001
    with pytest.raises(AmountError, match="более чем 1000"):
        parse_seats("1000")
    with pytest.raises(AmountError, match="целое число"):
        parse_seats("1500.5")
    with pytest.raises(AmountError, match="отрицательным"):
        parse_seats("-2000")
    with pytest.raises(AmountError, match="Укажите число пользователей"):
        parse_seats("")


def test_storage_in_gigabytes_or_terabytes():
    assert parse_storage("3", "TB") == 3 * TB
    assert parse_storage("3 072", "GB") == 3072 * GB == 3 * TB
    with pytest.raises(AmountError, match="больше нуля"):
        parse_storage("0", "TB")
    with pytest.raises(AmountError, match="ГБ или ТБ"):
        parse_storage("3", "PB")
    with pytest.raises(AmountError, match="целое число"):
        parse_storage("1,5", "TB")


def test_users_expected_points_small_teams_to_the_plans():
    assert parse_users_expected("2 000") == 2000
    with pytest.raises(AmountError, match="обычный тариф"):
        parse_users_expected("800")
