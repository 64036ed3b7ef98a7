"""The money ledger: every receipt recorded once, applied to orders only while they can take it, the rest on balance.

One path for every rouble (DESIGN "The money ledger"): card notifications, the return page, the scheduled re-check,
bank statements and staff marking a payment all call `record_receipt` and then `pay_order` / `pay_invoices`.
Billing activates what an allocation fully pays; documents marks the invoice paid and numbers the УПД when told.
Refunds are in `payments.refunds`, the history page and the report for the books in `payments.reports`.

Locks, always in this order: the receipt, then the order (then billing's subscription row). Giving money back
from a closed order inserts negative allocations under the order's lock only, since it can only add to the balance.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit import record_audit
from portal.billing.models import Order, OrderStatus
from portal.billing.settlement import apply_paid_order, order_problem
from portal.billing.signals import order_closed, scheduled_period_canceled, scheduled_topup_canceled
from portal.db import memo
from portal.documents import service as documents
from portal.documents.models import Invoice, InvoiceStatus
from portal.money import format_rub
from portal.payments.models import Allocation, Receipt, Refund, RefundStatus


class LedgerError(ValueError):
    """A ledger action that cannot be done; the message is for the person who asked, in Russian."""


# --- sums -------------------------------------------------------------------------------------------------------


def sum_of(db: Session, column: Any, *where: Any) -> int:
    """The sum of `column` over the rows matching `where`, 0 when none."""
    return int(db.scalar(sa.select(sa.func.coalesce(sa.func.sum(column), 0)).where(*where)) or 0)


# A canceled refund's money is on the balance again; every other refund has left it.
LIVE_REFUND = Refund.status != RefundStatus.CANCELED.value


def free_amount(db: Session, receipt_id: int) -> int:
    """What of one receipt is neither applied nor refunded (its share of the balance)."""
    return int(db.scalar(_free_stmt(), {"receipt_id": receipt_id}) or 0)


def _total(model: Any, *where: Any) -> Any:
    """The sum of `model.amount` over the rows matching `where` (0 when none), as a subquery of a bigger read."""
    return sa.select(sa.func.coalesce(sa.func.sum(model.amount), 0)).where(*where).scalar_subquery()


@functools.cache
def _free_stmt() -> sa.Select[Any]:
    """Received less applied less refunded, in one round trip (a payment asks it several times); built once."""
    receipt_id = sa.bindparam("receipt_id")
    return sa.select(
        _total(Receipt, Receipt.id == receipt_id)
        - _total(Allocation, Allocation.receipt_id == receipt_id)
        - _total(Refund, Refund.receipt_id == receipt_id, LIVE_REFUND)
    )


@dataclass(frozen=True)
class Totals:
    received: int
    allocated: int
    refunded: int

    @property
    def balance(self) -> int:
        return self.received - self.allocated - self.refunded


def account_totals(db: Session, account_id: int, until: datetime | None = None) -> Totals:
    """The account's sums, of everything or of what was recorded before `until` (the report's closing balance)."""

    def compute() -> Totals:
        params: dict[str, Any] = {"account_id": account_id}
        if until is not None:
            params["until"] = until
        row = db.execute(_totals_stmt(until is not None), params).one()
        return Totals(received=int(row[0] or 0), allocated=int(row[1] or 0), refunded=int(row[2] or 0))

    if until is not None:
        return compute()
    return memo(db, ("ledger_totals", account_id), compute)


@functools.cache
def _totals_stmt(until: bool) -> sa.Select[Any]:
    """The three sums in one round trip, each served by its own account index; built once."""
    account_id = sa.bindparam("account_id")

    def total(model: Any, *where: Any) -> Any:
        if until:
            where = (*where, model.created_at < sa.bindparam("until", type_=model.created_at.type))
        return _total(model, model.account_id == account_id, *where)

    return sa.select(total(Receipt), total(Allocation), total(Refund, LIVE_REFUND))


def account_balance(db: Session, account_id: int) -> int:
    return account_totals(db, account_id).balance


def order_allocated(db: Session, order_id: int) -> int:
    return sum_of(db, Allocation.amount, Allocation.order_id == order_id)


def order_due(db: Session, order: Order) -> int:
    """What the customer still has to pay for the order (after the balance and earlier part payments)."""
    if order.status != OrderStatus.PENDING:
        return 0
    return max(order.amount - order_allocated(db, order.id), 0)


def invoice_paid_amount(db: Session, invoice_id: int) -> int:
    return sum_of(db, Allocation.amount, Allocation.invoice_id == invoice_id)


def invoices_paid_amounts(db: Session, invoice_ids: Sequence[int], chunk: int = 1000) -> dict[int, int]:
    """What is allocated to each of many invoices, one grouped query per `chunk` ids (a statement import reads the
    open invoices of its payers at once); an invoice nothing is allocated to is absent."""
    ids = sorted(set(invoice_ids))
    paid: dict[int, int] = {}
    for start in range(0, len(ids), chunk):
        rows = db.execute(
            sa.select(Allocation.invoice_id, sa.func.sum(Allocation.amount))
            .where(Allocation.invoice_id.in_(ids[start : start + chunk]))
            .group_by(Allocation.invoice_id)
        ).all()
        paid.update({invoice_id: int(total or 0) for invoice_id, total in rows})
    return paid


def invoice_remaining(db: Session, invoice: Invoice) -> int:
    if invoice.status != InvoiceStatus.ISSUED:
        return 0
    return max(invoice.amount - invoice_paid_amount(db, invoice.id), 0)


# --- recording money in -----------------------------------------------------------------------------------------


def record_receipt(
    db: Session,
    *,
    account_id: int,
    method: str,
    amount: int,
    received_on: date,
    source_key: str,
    reference: str,
    now: datetime,
    actor: Any | None = None,
    payment_id: int | None = None,
    statement_line_id: int | None = None,
    payer_name: str | None = None,
    payer_inn: str | None = None,
) -> tuple[Receipt, bool]:
    """The receipt of this source, created once: (receipt, True) the first time, (existing, False) after that.

    Locked either way, so the caller can apply it without racing another delivery of the same money.
    """
    if amount <= 0:
        raise LedgerError("Сумма поступления должна быть больше нуля.")
    existing = db.scalars(
        sa.select(Receipt)
        .where(Receipt.source_key == source_key)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if existing is not None:
        return existing, False
    receipt = Receipt(
        account_id=account_id,
        method=method,
        amount=amount,
        received_on=received_on,
        source_key=source_key[:160],
        reference=reference[:200],
        payment_id=payment_id,
        statement_line_id=statement_line_id,
        payer_name=(payer_name or None) and payer_name[:500],
        payer_inn=(payer_inn or None) and payer_inn[:12],
        created_by_user_id=getattr(actor, "id", None),
        created_at=now,
    )
    db.add(receipt)
    db.flush()
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="payments.received",
        before=None,
        after={"receipt_id": receipt.id, "amount": amount, "method": method, "reference": receipt.reference},
    )
    return receipt, True


def lock_row(db: Session, model: Any, row_id: int, missing: str, error: type[Exception] = LedgerError) -> Any:
    """The row, re-read and locked for the rest of the transaction (see the lock order in the module docstring);
    `error(missing)` when there is no such row."""
    row = db.scalars(
        sa.select(model).where(model.id == row_id).with_for_update().execution_options(populate_existing=True)
    ).first()
    if row is None:
        raise error(missing)
    return row


def lock_receipt(db: Session, receipt_id: int) -> Receipt:
    return lock_row(db, Receipt, receipt_id, "Поступление не найдено.")


def flag(receipt: Receipt, text: str) -> None:
    """Put the receipt on staff's (and the owner's) list with why; several reasons add up."""
    text = text.strip().rstrip(".") + "."
    receipt.attention = f"{receipt.attention} {text}" if receipt.attention else text
    receipt.attention_resolved_at = None


# --- applying money to orders -----------------------------------------------------------------------------------


@dataclass
class Applied:
    """What applying a receipt to one order did."""

    order_id: int
    amount: int = 0  # kopecks applied now
    completed: bool = False  # the order is paid in full and activated
    problem: str | None = None  # why nothing was applied
    upd_id: int | None = None


def lock_order(db: Session, order_id: int) -> Order:
    """The order, re-read and locked (after the receipt, in the module docstring's order)."""
    return lock_row(db, Order, order_id, f"Заказ № {order_id} не найден.")


def pay_order(
    db: Session,
    receipt: Receipt,
    order_id: int,
    *,
    now: datetime,
    config: Mapping[str, Any],
    actor: Any | None = None,
    invoice: Invoice | None = None,
    limit: int | None = None,
    payment_doc: Mapping[str, Any] | None = None,
) -> Applied:
    """Apply the receipt's free money (at most `limit`) to the order, only while the order can still take it.

    Money beyond what the order needs stays on the balance. An order paid in full is activated by billing and,
    when it has an invoice, the invoice is marked paid and its УПД numbered. Nothing is committed.
    """
    order = lock_order(db, order_id)
    result = Applied(order.id)
    if order.account_id != receipt.account_id:
        result.problem = f"заказ № {order.id} другой компании"
        return result
    result.problem = order_problem(db, order, now)
    if result.problem is not None:
        return result
    if invoice is None:
        invoice = db.scalars(sa.select(Invoice).where(Invoice.order_id == order.id)).first()
    if invoice is not None and invoice.status == InvoiceStatus.CANCELED:
        result.problem = f"счёт № {invoice.number} аннулирован"
        return result
    due = order.amount - order_allocated(db, order.id)
    take = min(free_amount(db, receipt.id), due, due if limit is None else limit)
    if take > 0:
        db.add(
            Allocation(
                receipt_id=receipt.id,
                account_id=order.account_id,
                order_id=order.id,
                invoice_id=invoice.id if invoice is not None and invoice.status == InvoiceStatus.ISSUED else None,
                amount=take,
                created_at=now,
            )
        )
        db.flush()
        result.amount = take
        record_audit(
            db,
            actor=actor,
            account=order.account_id,
            action="payments.allocated",
            before={"order_id": order.id, "allocated": order.amount - due},
            after={"order_id": order.id, "allocated": order.amount - due + take, "receipt_id": receipt.id},
        )
    if take == due and due > 0 or (due == 0 and order.amount == 0):
        apply_paid_order(db, order.id, now=now, reference=receipt.reference, actor=actor)
        result.completed = True
        if invoice is not None and invoice.status == InvoiceStatus.ISSUED:
            upd = documents.invoice_paid(
                db,
                invoice,
                order=order,
                actor=actor,
                paid_on=receipt.received_on,
                reference=receipt.reference,
                payment_doc=payment_doc or {"number": receipt.reference, "date": receipt.received_on, "amount": take},
                now=now,
                config=config,
            )
            result.upd_id = upd.id if upd is not None else None  # None: dated (and numbered) when rights begin
    return result


def apply_balance(
    db: Session, order_id: int, *, now: datetime, config: Mapping[str, Any], actor: Any | None = None
) -> Applied:
    """Checkout applies the account's balance first: oldest money first, as much as the order needs."""
    order = db.get(Order, order_id)
    if order is None:
        raise LedgerError(f"Заказ № {order_id} не найден.")
    total = Applied(order_id)
    receipts = db.scalars(
        sa.select(Receipt)
        .where(Receipt.account_id == order.account_id)
        .order_by(Receipt.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for receipt in receipts:
        if free_amount(db, receipt.id) <= 0:
            continue
        step = pay_order(db, receipt, order_id, now=now, config=config, actor=actor)
        if step.problem is not None:
            total.problem = step.problem
            break
        total.amount += step.amount
        total.completed = step.completed
        total.upd_id = step.upd_id or total.upd_id
        if step.completed:
            break
    return total


def pay_invoices(
    db: Session,
    receipt: Receipt,
    invoices: Sequence[Invoice],
    *,
    now: datetime,
    config: Mapping[str, Any],
    actor: Any | None = None,
    payment_doc: Mapping[str, Any] | None = None,
) -> tuple[list[Applied], int]:
    """One payment naming several invoices pays them in the order named while the money lasts; the rest, and money
    for an invoice that can no longer be paid, stays on the account's balance with the reason flagged.

    Returns what applying did to each invoice and what of the receipt is left on the balance."""
    results: list[Applied] = []
    for invoice in invoices:
        if free_amount(db, receipt.id) <= 0:
            break
        if invoice.account_id != receipt.account_id:
            continue
        step = pay_order(
            db, receipt, invoice.order_id, now=now, config=config, actor=actor, invoice=invoice, payment_doc=payment_doc
        )
        if step.problem is not None:
            flag(receipt, f"Оплата по счёту № {invoice.number} не применена: {step.problem}; деньги на балансе")
        results.append(step)
    left = free_amount(db, receipt.id)
    if left > 0 and any(r.problem is None for r in results):
        flag(receipt, f"Переплата {format_rub(left)} зачислена на баланс")
    return results, left


# --- orders that can no longer be paid --------------------------------------------------------------------------


def applied_by_receipt(db: Session, order_id: int, *, newest_first: bool = False) -> Sequence[Any]:
    """(receipt id, kopecks) rows: what each receipt has applied to the order, net of what went back already."""
    query = (
        sa.select(Allocation.receipt_id, sa.func.sum(Allocation.amount))
        .where(Allocation.order_id == order_id)
        .group_by(Allocation.receipt_id)
    )
    if newest_first:
        query = query.order_by(Allocation.receipt_id.desc())
    return db.execute(query).all()


def give_back(db: Session, order: Order, receipt_id: int, amount: int, *, note: str, now: datetime) -> None:
    """A negative allocation: `amount` of what the receipt applied to the order is on the balance again."""
    db.add(
        Allocation(
            receipt_id=receipt_id,
            account_id=order.account_id,
            order_id=order.id,
            amount=-amount,
            note=note,
            created_at=now,
        )
    )


def release_order(db: Session, order: Order, *, reason: str, now: datetime, flag_receipts: bool = True) -> int:
    """Give back to the balance whatever was applied to an order that will never be activated; returns kopecks.

    `flag_receipts=False` when the owner chose it (a scheduled period canceled): nothing for staff to look at."""
    released = 0
    for receipt_id, amount in applied_by_receipt(db, order.id):
        if not amount:
            continue
        give_back(db, order, receipt_id, int(amount), note=reason[:500], now=now)
        receipt = db.get(Receipt, receipt_id)
        if receipt is not None and flag_receipts:
            flag(receipt, f"Заказ № {order.id} закрыт ({reason.rstrip('.')}): {format_rub(int(amount))} на балансе")
        released += int(amount)
    _audit_released(
        db,
        order,
        released,
        before={"allocated": released},
        after={"allocated": 0, "balance_added": released},
        reason=reason,
    )
    return released


def _audit_released(
    db: Session, order: Order, released: int, *, before: dict[str, Any], after: dict[str, Any], reason: str
) -> None:
    """The money a release gave back to the balance, in the audit trail (nothing was given back: nothing to say)."""
    if released:
        db.flush()
        record_audit(
            db,
            actor=None,
            account=order.account_id,
            action="payments.released",
            before={"order_id": order.id, **before},
            after={"order_id": order.id, **after},
            reason=reason,
        )


@order_closed.connect
def _on_order_closed(order: Order, *, db: Session, reason: str, now: datetime, **_: Any) -> None:
    release_order(db, order, reason=reason, now=now)


@scheduled_period_canceled.connect
def _on_scheduled_period_canceled(order: Order, *, db: Session, reason: str, now: datetime, **_: Any) -> None:
    release_order(db, order, reason=reason, now=now, flag_receipts=False)


def release_part(db: Session, order: Order, amount: int, *, reason: str, now: datetime) -> int:
    """Give back to the balance `amount` of what was applied to a paid order (the part for rights that will never
    be granted), newest money first; returns kopecks. Flagged to staff: the order's УПД may name those rights."""
    left = amount
    released = 0
    for receipt_id, applied in applied_by_receipt(db, order.id, newest_first=True):
        take = min(int(applied or 0), left)
        if take <= 0:
            continue
        give_back(db, order, receipt_id, take, note=reason[:500], now=now)
        receipt = db.get(Receipt, receipt_id)
        if receipt is not None:
            flag(
                receipt,
                f"Часть заказа № {order.id} не будет предоставлена ({reason.rstrip('.')}): {format_rub(take)} на "
                "балансе; проверьте, нужен ли УКД",
            )
        left -= take
        released += take
    _audit_released(db, order, released, before={"part": amount}, after={"balance_added": released}, reason=reason)
    return released


@scheduled_topup_canceled.connect
def _on_scheduled_topup_canceled(
    order: Order, *, db: Session, amount: int, reason: str, now: datetime, **_: Any
) -> None:
    release_part(db, order, amount, reason=reason, now=now)


# --- reads for pages --------------------------------------------------------------------------------------------


def list_attention(db: Session, account_id: int | None = None) -> list[Receipt]:
    """Money staff (or the owner) must look at: arrived for something that could not take it, or overpaid."""
    q = sa.select(Receipt).where(Receipt.attention.is_not(None), Receipt.attention_resolved_at.is_(None))
    if account_id is not None:
        q = q.where(Receipt.account_id == account_id)
    return list(db.scalars(q.order_by(Receipt.id)))


def resolve_attention(db: Session, receipt_id: int, *, actor: Any, note: str, now: datetime) -> Receipt:
    receipt = lock_receipt(db, receipt_id)
    receipt.attention_resolved_at = now
    record_audit(
        db,
        actor=actor,
        account=receipt.account_id,
        action="payments.attention_resolved",
        before={"receipt_id": receipt.id, "attention": receipt.attention},
        after={"receipt_id": receipt.id, "resolved": True},
        reason=note or None,
    )
    return receipt


def settle_from_balance(db: Session, order: Order, *, now: datetime, config: Mapping[str, Any], actor: Any) -> bool:
    """Checkout, before any other way of paying: the balance pays what it can; True when it paid the whole order."""
    if account_balance(db, order.account_id) <= 0 or order.status != OrderStatus.PENDING:
        return False
    applied = apply_balance(db, order.id, now=now, config=config, actor=actor)
    return applied.completed
