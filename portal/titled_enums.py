"""Enumerations whose members carry the Russian title the pages show beside the value the database stores."""

from __future__ import annotations

import enum
from typing import Any


class TitledStrEnum(enum.StrEnum):
    """A StrEnum declared as `MEMBER = "value", "Заголовок"`: the value is stored and compared, the title shown."""

    title: str  # type: ignore[assignment]  # the member's title, in place of str.title

    def __new__(cls, value: str, title: str) -> TitledStrEnum:
        member = str.__new__(cls, value)
        member._value_ = value
        member.title = title
        return member


def title_property(titled: type[TitledStrEnum], column: str = "status") -> Any:
    """A model's `status_title`: the title of the member its `column` holds."""
    return property(lambda row: titled(getattr(row, column)).title)
