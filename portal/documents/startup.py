"""Start-up check of the seller's requisites: a wrong ИНН or account must stop the portal, not reach an invoice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portal.config import ConfigError
from portal.documents.seller import seller_problems


def check(config: Mapping[str, Any]) -> None:
    problems = seller_problems(config)
    if problems:
        raise ConfigError(
            "Реквизиты продавца в настройках неверны, счета и УПД с ними выставлять нельзя:\n  - "
            + "\n  - ".join(problems)
        )
