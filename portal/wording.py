"""The Russian plural: which form of a noun goes with a count (CLDR's rules for `ru`, through Babel).

The one place the portal chooses between «1 пользователь», «2 пользователя» and «5 пользователей»; month names come
from Babel too (portal.timeutil) and amounts (portal.money).
"""

from __future__ import annotations

from babel import Locale

# The portal's one locale, parsed once: Babel's formatting functions take it on every call.
RU = Locale("ru")


def plural_ru(n: int, one: str, few: str, many: str) -> str:
    """The noun form that goes with the whole number n: 1 рубль, 2 рубля, 5 рублей, 11 рублей, 21 рубль.

    CLDR names the forms of a whole number one, few and many (`other` is for fractions, which no count here is).
    A case other than the nominative passes its own three forms: «до 21 пользователя» is
    plural_ru(21, "пользователя", "пользователей", "пользователей")."""
    form = RU.plural_form(abs(n))
    return one if form == "one" else few if form == "few" else many


def minutes_ru(n: int) -> str:
    """«через 1 минуту», «через 3 минуты», «через 15 минут»: the wait a rate limit names (accusative)."""
    return f"{n} {plural_ru(n, 'минуту', 'минуты', 'минут')}"
