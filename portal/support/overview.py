"""What the console's pages read: the account page, the unmatched payments count, and the names of ids shown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus, Role, User
from portal.audit import AuditLog
from portal.audit.paging import list_audit
from portal.billing.custom_plans import list_custom_plans
from portal.billing.models import CustomPlan, Order
from portal.billing.orders import list_orders
from portal.billing.subscriptions import SubscriptionState, get_subscription_state, get_usage
from portal.documents import service as documents
from portal.documents.models import Invoice, Requisites, Upd
from portal.payments.models import LineStatus, StatementLine
from portal.payments.service import list_payments
from portal.seats.crm import outbox, sync
from portal.seats.crm.models import CrmSyncEntry, OutboxStatus
from portal.support.models import SupportRequest
from portal.support.requests import list_requests_for_account


@dataclass
class AccountOverview:
    account: Account
    state: SubscriptionState
    seats_used: int
    storage_used: int
    members: list[tuple[Membership, User]]
    requisites: Requisites | None
    custom_plans: list[CustomPlan]
    requests: list[SupportRequest]
    invoices: list[Invoice]
    upds_by_invoice: dict[int, Upd]
    pending_orders: list[Any]
    paid_orders: list[Any]
    payments: list[tuple[Any, Any]]
    crm_connection: Any
    crm_runs: list[Any]
    crm_entries: dict[int, list[Any]]
    crm_problems: list[Any]
    audit: list[AuditLog]
    owners: list[User] = field(default_factory=list)
    orders_by_id: dict[int, Any] = field(default_factory=dict)

    @property
    def upds(self) -> list[Upd]:
        return sorted(self.upds_by_invoice.values(), key=lambda u: (u.doc_date, u.id), reverse=True)


def get_account(db: Session, account_id: int) -> Account | None:
    return db.get(Account, account_id)


def get_account_overview(db: Session, account: Account, now: datetime) -> AccountOverview:
    """Everything the account page shows, each part a bounded query."""
    state = get_subscription_state(db, account.id, now)
    usage = get_usage(db, account)
    members = [
        (m, u)
        for m, u in db.execute(
            sa.select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.account_id == account.id, Membership.role.in_([Role.OWNER.value, Role.ACCOUNTANT.value]))
            .order_by(Membership.role.desc(), User.id)
        ).all()
    ]
    invoices = list(
        db.scalars(sa.select(Invoice).where(Invoice.account_id == account.id).order_by(Invoice.id.desc()).limit(50))
    )
    upds = {
        u.invoice_id: u
        for u in db.scalars(sa.select(Upd).where(Upd.account_id == account.id).order_by(Upd.id.desc()).limit(50))
    }
    order_ids = [i.order_id for i in invoices]
    orders = {o.id: o for o in db.scalars(sa.select(Order).where(Order.id.in_(order_ids)))} if order_ids else {}
    runs = sync.list_runs(db, account.id, limit=10)
    entries: dict[int, list[Any]] = {}
    if runs:
        for entry in db.scalars(
            sa.select(CrmSyncEntry)
            .where(CrmSyncEntry.run_id.in_([r.id for r in runs]))
            .order_by(CrmSyncEntry.id)
            .limit(500)
        ):
            entries.setdefault(entry.run_id, []).append(entry)
    return AccountOverview(
        account=account,
        state=state,
        seats_used=usage.active_users,
        storage_used=usage.storage_used_bytes,
        members=members,
        owners=[u for m, u in members if m.role == Role.OWNER.value and m.status == MembershipStatus.ACTIVE.value],
        requisites=documents.get_requisites(db, account.id),
        custom_plans=list_custom_plans(db, account.id, include_inactive=True),
        requests=list_requests_for_account(db, account.id, limit=20),
        invoices=invoices,
        upds_by_invoice=upds,
        pending_orders=list_orders(db, account.id, statuses=("pending",), limit=20),
        paid_orders=list_orders(db, account.id, statuses=("paid",), limit=20),
        payments=list_payments(db, account.id, limit=50),
        crm_connection=sync.get_connection(db, account.id),
        crm_runs=runs,
        crm_entries=entries,
        crm_problems=outbox.list_outbox(
            db, account.id, statuses=(OutboxStatus.FAILED.value, OutboxStatus.REFUSED.value), limit=50
        ),
        audit=list_audit(db, account_id=account.id, per_page=30).rows,
        orders_by_id=orders,
    )


def count_unmatched_lines(db: Session) -> int:
    return int(
        db.scalar(
            sa.select(sa.func.count()).select_from(StatementLine).where(StatementLine.status == LineStatus.UNMATCHED)
        )
        or 0
    )


def list_staff(db: Session) -> list[User]:
    return list(db.scalars(sa.select(User).where(User.is_staff.is_(True)).order_by(User.name)))


def accounts_by_id(db: Session, ids: Sequence[int | None]) -> dict[int, Account]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {a.id: a for a in db.scalars(sa.select(Account).where(Account.id.in_(wanted)))}


def users_by_id(db: Session, ids: Sequence[int | None]) -> dict[int, User]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {u.id: u for u in db.scalars(sa.select(User).where(User.id.in_(wanted)))}
