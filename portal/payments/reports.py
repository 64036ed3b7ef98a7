"""What money did on an account (the history page) and the ledger's report for the books."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.payments.ledger import LIVE_REFUND, account_totals, sum_of
from portal.payments.models import Allocation, LineStatus, Receipt, Refund, RefundStatus, StatementLine
from portal.timeutil import msk_midnight


@dataclass(frozen=True)
class Entry:
    """One line of what money did on an account, newest first on the page."""

    at: datetime
    title: str
    amount: int  # + in, − out of the balance
    detail: str = ""
    order_id: int | None = None
    invoice_id: int | None = None


def history(db: Session, account_id: int) -> list[Entry]:
    entries: list[Entry] = []
    for r in db.scalars(sa.select(Receipt).where(Receipt.account_id == account_id)):
        entries.append(Entry(r.created_at, f"Поступление: {r.method_title.lower()}", r.amount, r.reference))
    for a in db.scalars(sa.select(Allocation).where(Allocation.account_id == account_id)):
        if a.amount >= 0:
            entries.append(
                Entry(a.created_at, f"Зачтено в оплату заказа № {a.order_id}", -a.amount, "", a.order_id, a.invoice_id)
            )
        else:
            entries.append(
                Entry(a.created_at, f"Возвращено на баланс: заказ № {a.order_id}", -a.amount, a.note or "", a.order_id)
            )
    for f in db.scalars(sa.select(Refund).where(Refund.account_id == account_id)):
        if f.status != RefundStatus.CANCELED.value:
            entries.append(Entry(f.created_at, f"Возврат ({f.status_title.lower()})", -f.amount, f.reason or ""))
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries


def report(db: Session, start: date, end: date) -> dict[str, Any]:
    """Received, allocated, refunded and balance for [start, end] (Moscow dates of the money's arrival and of each
    entry), by account and in total; `unmatched`: statement money of the period listed for staff, not credited."""
    since, until = msk_midnight(start), msk_midnight(date.fromordinal(end.toordinal() + 1))

    def by_account(model: Any, moment: Any, *where: Any) -> dict[int, int]:
        rows = db.execute(
            sa.select(model.account_id, sa.func.sum(model.amount))
            .where(moment >= since, moment < until, *where)
            .group_by(model.account_id)
        ).all()
        return {int(a): int(s or 0) for a, s in rows}

    received = by_account(Receipt, Receipt.created_at)
    allocated = by_account(Allocation, Allocation.created_at)
    refunded = by_account(Refund, Refund.created_at, LIVE_REFUND)
    by_method = {
        m: int(s or 0)
        for m, s in db.execute(
            sa.select(Receipt.method, sa.func.sum(Receipt.amount))
            .where(Receipt.created_at >= since, Receipt.created_at < until)
            .group_by(Receipt.method)
        ).all()
    }
    unmatched = sum_of(
        db,
        StatementLine.amount,
        StatementLine.status == LineStatus.UNMATCHED.value,
        StatementLine.created_at >= since,
        StatementLine.created_at < until,
    )
    accounts = {}
    for account_id in sorted(set(received) | set(allocated) | set(refunded)):
        r, a, f = received.get(account_id, 0), allocated.get(account_id, 0), refunded.get(account_id, 0)
        accounts[str(account_id)] = {
            "received": r,
            "allocated": a,
            "refunded": f,
            "balance": r - a - f,
            "balance_at_end": account_totals(db, account_id, until).balance,
        }
    total_r, total_a, total_f = sum(received.values()), sum(allocated.values()), sum(refunded.values())
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "received": total_r,
        "allocated": total_a,
        "refunded": total_f,
        "balance": total_r - total_a - total_f,
        "unmatched": unmatched,
        "by_method": by_method,
        "accounts": accounts,
    }
