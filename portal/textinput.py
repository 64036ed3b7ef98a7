"""One input hygiene for every text that enters the portal: forms, the JSON API, CRM data, query strings.

PostgreSQL refuses a NUL byte in text, XML parsers refuse most control characters, a CR/LF in a one-line value
becomes a header or a line of its own in what the portal writes, and `str.isdigit()` accepts '²' and '٣' which
`int()` then refuses or reads differently. So such text is refused with a message for the person (or a 400 for the
API) before anything else looks at it, and lengths are checked before the database sees them.
"""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from wtforms import Field, TextAreaField
from wtforms.validators import Length

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators; a multi-line text may hold \t, \n and \r.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
# A field without a Length validator of its own still has a bound: nothing a person types is longer.
DEFAULT_MAX_LINE = 1000
DEFAULT_MAX_TEXT = 10000

CONTROL_MESSAGE = "Текст содержит непечатаемые символы (например, из скопированного документа). Наберите его заново."
LINE_BREAK_MESSAGE = "Здесь нужна одна строка, без переносов."


class BadText(ValueError):
    """Text the portal cannot carry; the message is for the person."""


def text_problem(value: str, *, multiline: bool = False, max_length: int | None = None) -> str | None:
    """What is wrong with this text, in Russian, or None."""
    if "\x00" in value or _CONTROL_MULTILINE.search(value):
        return CONTROL_MESSAGE
    if not multiline and _CONTROL.search(value):
        return LINE_BREAK_MESSAGE if ("\n" in value or "\r" in value) else CONTROL_MESSAGE
    if max_length is not None and len(value) > max_length:
        return f"Не длиннее {max_length} символов."
    return None


def check_text(value: str, *, multiline: bool = False, max_length: int | None = None) -> str:
    """The text itself, or BadText with the reason."""
    problem = text_problem(value, multiline=multiline, max_length=max_length)
    if problem:
        raise BadText(problem)
    return value


def strip_control(value: str, *, max_length: int | None = None) -> str:
    """For data of other systems (a CRM's user names, a bank's statement) that cannot be sent back with a message:
    the control characters become spaces, and the text is cut to what the column holds."""
    cleaned = _CONTROL.sub(" ", value)
    return cleaned[:max_length] if max_length is not None else cleaned


def find_bad_text(data: Any, path: str = "") -> tuple[str, str] | None:
    """The first string in a JSON value (keys included) the portal cannot carry: (where, why), or None."""
    if isinstance(data, str):
        problem = text_problem(data, multiline=True, max_length=DEFAULT_MAX_TEXT)
        return (path or "body", problem) if problem else None
    if isinstance(data, dict):
        for key, value in data.items():
            found = find_bad_text(key, path) or find_bad_text(value, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found = find_bad_text(value, f"{path}[{i}]")
            if found:
                return found
    return None


# What people put between the digits of an identifier they paste: spaces (NBSP and thin ones too) and dashes.
_SEPARATORS = re.compile(r"[\s\u00a0\u2007\u202f\-\u2010\u2011\u2012\u2013\u2014\u2212]+")


def strip_separators(value: Any) -> Any:
    """'500 123 456 750' / '694-419' / '694\u00a0419' → digits only; anything else passes through (a form filter)."""
    return _SEPARATORS.sub("", value) if isinstance(value, str) else value


_QUOTES = '«»"„“”'


def quoted(name: str) -> str:
    """A company's name inside a sentence: «Ромашка», but ООО «Ромашка» as typed — never «ООО «Ромашка»»,
    which doubles the guillemets at the end. A name with quotes of its own is already set off."""
    return name if any(q in name for q in _QUOTES) else f"«{name}»"


def ascii_int(raw: Any, *, max_digits: int = 9) -> int | None:
    """'12' → 12; '²', '１２', '-1', '' or too many digits → None (never a ValueError from int())."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def ascii_digits(value: str) -> str:
    """Any script's decimal digits as ASCII ('１２３' → '123'), for fields that hold a number."""
    return "".join(str(int(c)) if c.isdecimal() and not c.isascii() else c for c in value)


def _max_length(field: Field) -> int:
    for validator in field.validators:
        if isinstance(validator, Length) and validator.max not in (None, -1):
            return validator.max
    return DEFAULT_MAX_TEXT if isinstance(field, TextAreaField) else DEFAULT_MAX_LINE


class PortalForm(FlaskForm):
    """The base of every form: text the portal cannot carry is refused at its field before any other check runs
    (a validator that queries the database must never see a NUL byte)."""

    class Meta:
        def render_field(self, field: Field, render_kw: dict[str, Any]) -> Any:
            # WTForms turns a Length validator into maxlength/minlength, and a browser then cuts what is pasted
            # («694 419» → «694 41», a spaced ИНН, a long name mid-word) without a word. Limits are the server's:
            # it normalises first (spaces, dashes) and refuses what is too long at the field, saying the limit.
            return super().render_field(field, {"maxlength": False, "minlength": False, **render_kw})  # type: ignore[misc]

    def validate(self, extra_validators: Any = None) -> bool:
        clean = True
        for field in self:
            problem = _field_problem(field)
            if problem:
                field.errors = [problem]
                clean = False
        if not clean:
            return False
        return super().validate(extra_validators)


def _field_problem(field: Field) -> str | None:
    multiline = isinstance(field, TextAreaField)
    # What was typed, before filters: a NUL is refused even where a filter would strip it away.
    for raw in getattr(field, "raw_data", None) or []:
        if isinstance(raw, str):
            problem = text_problem(raw, multiline=multiline)
            if problem:
                return problem
    if isinstance(field.data, str):
        return text_problem(field.data, multiline=multiline, max_length=_max_length(field))
    return None
