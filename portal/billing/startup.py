"""Start-up check of billing settings: the license version orders will record must exist."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portal.billing.license import LICENSE_VERSIONS
from portal.config import ConfigError


def check(config: Mapping[str, Any]) -> None:
    version = config.get("LICENSE_VERSION")
    if version not in LICENSE_VERSIONS:
        known = ", ".join(sorted(LICENSE_VERSIONS))
        raise ConfigError(f"LICENSE_VERSION={version!r} is not a published license version (known: {known})")
