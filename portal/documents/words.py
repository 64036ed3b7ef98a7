"""Amounts written out in Russian words, as printed on invoices and УПД ("Сумма прописью")."""

from __future__ import annotations

import re

from num2words import num2words

from portal.wording import plural_ru

__all__ = ["amount_in_words"]

# Some num2words releases put thousands in the masculine ("один тысяча"); тысяча is feminine.
_FEMININE_THOUSANDS = re.compile(r"\b(один|два)(\s+тысяч[аи]?)\b")


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
        f"{_roubles_in_words(roubles)} {plural_ru(roubles, 'рубль', 'рубля', 'рублей')} "
        f"{kop:02d} {plural_ru(kop, 'копейка', 'копейки', 'копеек')}"
    )
    return text[0].upper() + text[1:]
