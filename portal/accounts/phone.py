"""Phone numbers as people type them, normalised to E.164."""

from __future__ import annotations

import functools

import phonenumbers

# Russian mobile numbers: +7, then a 10-digit national number whose code (ABC/DEF) is 9XX. The whole 9XX zone is
# the mobile (DEF) zone of the Russian numbering plan, and the plan's registry (Реестр российской системы и плана
# нумерации, published by Минцифры) reassigns ranges inside it every month; the phonenumbers metadata follows it
# months late, so it calls fresh ranges "not a number" (e.g. parts of code 930 in phonenumbers 9.0.43). For
# sign-in we trust the +7 9XX format instead of shipping the registry's ranges as data: a stale copy of the
# ranges would lock people out exactly as the stale metadata does, and the only cost of accepting a well-formed
# number that is not assigned yet is one SMS the gateway refuses — and that refusal is shown at the field.
_RU_COUNTRY_CODE = 7
_RU_MOBILE_ZONE = "9"
_RU_NATIONAL_LENGTH = 10


class InvalidPhone(ValueError):
    pass


def _well_formed_russian_mobile(number: phonenumbers.PhoneNumber) -> bool:
    national = str(number.national_number)
    return (
        number.country_code == _RU_COUNTRY_CODE
        and len(national) == _RU_NATIONAL_LENGTH
        and national.startswith(_RU_MOBILE_ZONE)
        and not number.italian_leading_zero
    )


# Cached: parsing and validating costs ~50 µs, and the CRM's first import checks each of thousands of phones twice
# (planning, then adding); a refused phone raises and is not kept.
@functools.lru_cache(maxsize=16384)
def normalize_phone(raw: str) -> str:
    """'8 999 123-45-67', '+7 (999) 123 45 67', '79991234567' → '+79991234567'."""
    text = (raw or "").strip()
    if not text:
        raise InvalidPhone("Укажите номер телефона.")
    if len(text) > 32:
        raise InvalidPhone("Номер телефона слишком длинный.")
    try:
        number = phonenumbers.parse(text, "RU")
    except phonenumbers.NumberParseException:
        raise InvalidPhone("Не похоже на номер телефона. Пример: +7 999 123-45-67.") from None
    if not (phonenumbers.is_valid_number(number) or _well_formed_russian_mobile(number)):
        raise InvalidPhone("Такого номера не существует. Проверьте цифры: например, +7 999 123-45-67.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=8192)
def format_phone(e164: str) -> str:
    """'+79991234567' → '+7 999 123-45-67' for display (cached: parsing costs more than the rest of a table row)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    if not phonenumbers.is_valid_number(number) and _well_formed_russian_mobile(number):
        # The library would print an unknown range as one block of digits; write it as Russian mobiles are written.
        national = str(number.national_number)
        return f"+7 {national[:3]} {national[3:6]}-{national[6:8]}-{national[8:]}"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
