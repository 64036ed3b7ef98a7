"""Imports every feature's models so that the metadata (Alembic, create_all) sees all tables."""

from __future__ import annotations

import importlib
import importlib.util

from portal.db import Base

MODEL_MODULES = (
    "portal.accounts.models",
    "portal.audit",
    "portal.billing.models",
    "portal.payments.models",
    "portal.payments.autopay_models",
    "portal.documents.models",
    "portal.seats.models",
    "portal.seats.crm.models",
    "portal.support.models",
    "portal.tasks.models",
    "portal.notices.models",
)


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def load_all() -> type[Base]:
    for name in MODEL_MODULES:
        if module_exists(name):
            importlib.import_module(name)
    return Base
