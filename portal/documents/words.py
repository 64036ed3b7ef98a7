"""Amounts written out in Russian words, as printed on invoices and УПД ("Сумма прописью")."""

from __future__ import annotations

import re

from num2words import num2words

__all__ = ["amount_in_words", "plural_form"]

# Some num2words releases put thousands in the masculine ("один тысяча"); тысяча is feminine.
_FEMININE_THOUSANDS = re.compile(r"\b(один|два)(\s+тысяч[аи]?)\b")


def plural_form(n: int, one: str, few: str, many: str) -> str:
    """The noun form that goes with the number n: 1 рубль, 2 рубля, 5 рублей, 11 рублей, 21 рубль."""
    n = abs(n)
    if 11 <= n % 100 <= 14:
        return many
    if n % 10 == 1:
        return one
    if 2 <= n % 10 <= 4:
        return few
    return many


def _roubles_in_words(roubles: int) -> str:
    words = num2words(roubles, lang="ru")
    return _FEMININE_THOUSANDS.sub(lambda m: ("одна" if m[1] == "один" else "две") + m[2], words)


def amount_in_words(kopecks: int) -> str:
    """8464_50 → «Восемь тысяч четыреста шестьдесят четыре рубля 50 копеек»."""
    if isinstance(kopecks, bool) or not isinstance(kopecks, int):
        raise TypeError("amount must be an int number of kopecks")
    if kopecks < 0:
        raise ValueError("amount must not be negative")
    roubles, kop = divmod(kopecks, 100)
    text = (
        f"{_roubles_in_words(roubles)} {plural_form(roubles, 'рубль', 'рубля', 'рублей')} "
        f"{kop:02d} {plural_form(kop, 'копейка', 'копейки', 'копеек')}"
    )
    return text[0].upper() + text[1:]
