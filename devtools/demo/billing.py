"""Demo data: ИП Соколов has a paid plan (users-12 for a year, bought two months ago); ООО «Ромашка» stays on the
free plan with 9 active users, so the over-limit warning and the upgrade path can be shown."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from portal.billing.orders import create_order
from portal.billing.settlement import apply_paid_order
from portal.db import utcnow

DEMO_ORDER_KEY = "demo-small-users-12"


def seed(db: Any, demo: dict[str, Any]) -> None:
    bought = utcnow() - timedelta(days=61)
    order = create_order(
        db,
        actor=None,
        account_id=demo["small"].id,
        plan_code="users-12",
        months=12,
        payer_type="card",
        license_version="2026-01",
        idempotency_key=DEMO_ORDER_KEY,
        now=bought,
    )
    db.flush()
    if order.status == "pending":
        apply_paid_order(db, order.id, now=bought, reference="demo: оплата картой")
