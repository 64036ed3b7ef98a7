"""Imports every feature's models so that the metadata (Alembic, create_all) sees all tables."""

from __future__ import annotations

from portal import audit
from portal.accounts import models as accounts
from portal.billing import models as billing
from portal.db import Base
from portal.documents import models as documents
from portal.notices import models as notices
from portal.payments import autopay_models
from portal.payments import models as payments
from portal.seats import models as seats
from portal.seats.crm import models as crm
from portal.support import models as support
from portal.tasks import models as tasks

MODEL_MODULES = (accounts, audit, billing, payments, autopay_models, documents, seats, crm, support, tasks, notices)


def load_all() -> type[Base]:
    """Base with every table on its metadata (importing this module put them there)."""
    return Base
