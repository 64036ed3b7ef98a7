"""Start-up checks of the e-mail settings support uses to resend documents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portal.config import ConfigError
from portal.support.email import BACKENDS


def check(config: Mapping[str, Any]) -> None:
    problems: list[str] = []
    backend = config.get("EMAIL_BACKEND")
    if config.get("EMAIL_BACKEND_OBJECT") is not None:
        return
    if backend not in BACKENDS:
        problems.append(f"EMAIL_BACKEND={backend!r}: expected one of {', '.join(BACKENDS)}")
    elif backend == "smtp" and not config.get("SMTP_HOST"):
        problems.append("SMTP_HOST is not set for EMAIL_BACKEND=smtp")
    elif backend == "console" and config.get("PORTAL_ENV") == "production":
        problems.append("EMAIL_BACKEND=console only logs letters; set EMAIL_BACKEND=smtp and SMTP_HOST")
    if not config.get("EMAIL_FROM") or "@" not in str(config.get("EMAIL_FROM")):
        problems.append("EMAIL_FROM must be an e-mail address, e.g. billing@example.ru")
    if problems:
        raise ConfigError("E-mail settings: " + "; ".join(problems))
