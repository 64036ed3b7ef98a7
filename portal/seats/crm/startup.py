"""Start-up check of the CRM settings: a misconfigured CRM is named at start, not at the owner's first click."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portal.config import ConfigError

from .factory import BACKENDS


def check(config: Mapping[str, Any]) -> None:
    backend = config.get("CRM_BACKEND") or "emulator"
    if backend not in BACKENDS:
        raise ConfigError(f"CRM_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "amocrm":
        missing = [key for key in ("AMOCRM_CLIENT_ID", "AMOCRM_CLIENT_SECRET") if not config.get(key)]
        if missing:
            raise ConfigError(
                f"CRM_BACKEND=amocrm needs the integration's {' and '.join(missing)} (amoCRM → Настройки → Интеграции)"
            )
