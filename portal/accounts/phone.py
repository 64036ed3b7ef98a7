"""Phone numbers as people type them, normalised to E.164."""

from __future__ import annotations

import phonenumbers


class InvalidPhone(ValueError):
    pass


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
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("Такого номера не существует. Проверьте цифры: например, +7 999 123-45-67.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def format_phone(e164: str) -> str:
    """'+79991234567' → '+7 999 123-45-67' for display."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
