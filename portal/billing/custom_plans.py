"""Plans made for one account by staff: listing, creating, deactivating, and the plans an account may buy."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import User
from portal.audit import record_audit
from portal.billing.catalog import PLANS, Plan, get_plan, make_custom_plan
from portal.billing.models import CustomPlan
from portal.db import memo

# --- plans and usage --------------------------------------------------------------------------------------


def list_custom_plans(db: Session, account_id: int, *, include_inactive: bool = False) -> list[CustomPlan]:
    return list(db.scalars(_custom_plans_stmt(include_inactive), {"account_id": account_id}))


# Asked on every page of a signed-in company (the plan suggestion): built once, only the parameters change.
@functools.cache
def _custom_plans_stmt(include_inactive: bool) -> sa.Select[tuple[CustomPlan]]:
    q = sa.select(CustomPlan).where(CustomPlan.account_id == sa.bindparam("account_id")).order_by(CustomPlan.seats)
    return q if include_inactive else q.where(CustomPlan.active.is_(True))


def get_plan_for_account(db: Session, account_id: int | None, code: str) -> Plan | None:
    """A self-service plan, or one of this account's active custom plans; None for anything else."""
    plan = get_plan(code)
    if plan is not None:
        return plan
    if account_id is None or not code.startswith("custom-"):
        return None
    row = db.scalars(
        sa.select(CustomPlan).where(
            CustomPlan.code == code, CustomPlan.account_id == account_id, CustomPlan.active.is_(True)
        )
    ).first()
    return row.as_plan() if row is not None else None


def list_plans_for_account(db: Session, account_id: int | None) -> list[Plan]:
    plans = list(PLANS)
    if account_id is not None:
        plans.extend(
            memo(
                db,
                ("custom_plans", account_id),
                lambda: tuple(c.as_plan() for c in list_custom_plans(db, account_id)),
            )
        )
    return plans


def create_custom_plan(
    db: Session,
    *,
    actor: User | None,
    account_id: int,
    seats: int,
    storage_bytes: int,
    monthly_price: int,
    now: datetime,
) -> CustomPlan:
    """Support sets a plan over 1000 users for one account; the same seat count updates that plan's terms."""
    plan = make_custom_plan(account_id, seats, storage_bytes, monthly_price)
    row = db.scalars(sa.select(CustomPlan).where(CustomPlan.code == plan.code)).first()
    before = None
    if row is None:
        row = CustomPlan(
            account_id=account_id,
            code=plan.code,
            created_at=now,
            created_by_user_id=actor.id if actor is not None else None,
            seats=plan.seats,
            storage_bytes=plan.storage_bytes,
            monthly_price=plan.monthly_price,
            active=True,
        )
        db.add(row)
    else:
        before = custom_plan_dict(row)
        row.storage_bytes, row.monthly_price, row.active = plan.storage_bytes, plan.monthly_price, True
    db.flush()
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="billing.custom_plan_set",
        before=before,
        after=custom_plan_dict(row),
    )
    return row


def deactivate_custom_plan(db: Session, *, actor: User | None, account_id: int, code: str, now: datetime) -> bool:
    """The plan is no longer offered; what was already paid on it keeps its limits until it ends."""
    row = db.scalars(sa.select(CustomPlan).where(CustomPlan.code == code, CustomPlan.account_id == account_id)).first()
    if row is None or not row.active:
        return False
    row.active = False
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="billing.custom_plan_deactivated",
        before=custom_plan_dict(row) | {"active": True},
        after={"active": False},
    )
    return True


def custom_plan_dict(row: CustomPlan) -> dict[str, Any]:
    """A custom plan as the audit log records it (support's staff actions record it the same way)."""
    return {
        "code": row.code,
        "seats": row.seats,
        "storage_bytes": row.storage_bytes,
        "monthly_price": row.monthly_price,
        "active": row.active,
    }
