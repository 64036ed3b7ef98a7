"""Amounts in words as they are printed under an invoice's total."""

from __future__ import annotations

import pytest

from portal.documents import words
from portal.documents.words import amount_in_words
from portal.wording import plural_ru as plural_form

ROUBLES = {
    1: "Один рубль",
    2: "Два рубля",
    5: "Пять рублей",
    11: "Одиннадцать рублей",
    21: "Двадцать один рубль",
    101: "Сто один рубль",
    1_000: "Одна тысяча рублей",
    2_000: "Две тысячи рублей",
    5_000: "Пять тысяч рублей",
    1_000_000: "Один миллион рублей",
}
KOPECKS = {
    0: "00 копеек",
    1: "01 копейка",
    2: "02 копейки",
    5: "05 копеек",
    21: "21 копейка",
}


@pytest.mark.parametrize("roubles", ROUBLES)
@pytest.mark.parametrize("kopecks", KOPECKS)
def test_roubles_and_kopecks_in_words(roubles: int, kopecks: int) -> None:
    assert amount_in_words(roubles * 100 + kopecks) == f"{ROUBLES[roubles]} {KOPECKS[kopecks]}"


@pytest.mark.parametrize(
    ("kopecks", "expected"),
    [
        (846_450, "Восемь тысяч четыреста шестьдесят четыре рубля 50 копеек"),
        (0, "Ноль рублей 00 копеек"),
        (99, "Ноль рублей 99 копеек"),
        (1_200, "Двенадцать рублей 00 копеек"),
        (11_211, "Сто двенадцать рублей 11 копеек"),
        (2_100_000, "Двадцать одна тысяча рублей 00 копеек"),
        (2_200_000, "Двадцать две тысячи рублей 00 копеек"),
        (1_114_000, "Одиннадцать тысяч сто сорок рублей 00 копеек"),
        (2_999_000, "Двадцать девять тысяч девятьсот девяносто рублей 00 копеек"),
        (
            123_456_789,
            "Один миллион двести тридцать четыре тысячи пятьсот шестьдесят семь рублей 89 копеек",
        ),
        (200_100_014, "Два миллиона одна тысяча рублей 14 копеек"),
    ],
)
def test_invoice_totals_in_words(kopecks: int, expected: str) -> None:
    assert amount_in_words(kopecks) == expected


def test_masculine_thousands_from_an_old_num2words_are_corrected(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {21_002: "двадцать один тысяча два", 2_000: "два тысячи", 1_000_000: "один миллион"}
    monkeypatch.setattr(words, "num2words", lambda n, lang: outputs[n])
    assert amount_in_words(2_100_200) == "Двадцать одна тысяча два рубля 00 копеек"
    assert amount_in_words(200_000) == "Две тысячи рублей 00 копеек"
    assert amount_in_words(100_000_000) == "Один миллион рублей 00 копеек"


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "рублей"),
        (1, "рубль"),
        (3, "рубля"),
        (11, "рублей"),
        (14, "рублей"),
        (22, "рубля"),
        (111, "рублей"),
    ],
)
def test_plural_form(n: int, expected: str) -> None:
    assert plural_form(n, "рубль", "рубля", "рублей") == expected


def test_bad_amounts_are_refused() -> None:
    with pytest.raises(ValueError):
        amount_in_words(-1)
    with pytest.raises(TypeError):
        amount_in_words(84.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        amount_in_words(True)
