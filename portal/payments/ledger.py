"""The money ledger: every receipt recorded once, applied to orders only while they can take it, the rest on balance.

One path for every rouble (DESIGN "The money ledger"): card notifications, the return page, the scheduled re-check,
bank statements and staff marking a payment all call `record_receipt` and then `pay_order` / `pay_invoices`.
Billing activates what an allocation fully pays; documents marks the invoice paid and numbers the УПД when told.

Locks, always in this order: the receipt, then the order (then billing's subscription row). Giving money back
from a closed order inserts negative allocations under the order's lock only, since it can only add to the balance.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit import record_audit
from portal.billing import service as billing
from portal.billing.models import Order, OrderStatus
from portal.billing.signals import order_closed, scheduled_period_canceled, scheduled_topup_canceled
from portal.db import memo
from portal.documents.models import Invoice, InvoiceStatus
from portal.money import format_rub
from portal.payments.models import PROVIDER_RECEIPT_METHODS, Allocation, Receipt, Refund, RefundStatus

log = logging.getLogger(__name__)


class LedgerError(ValueError):
    """A ledger action that cannot be done; the message is for the person who asked, in Russian."""


# --- sums -------------------------------------------------------------------------------------------------------


def _sum(db: Session, column: Any, *where: Any) -> int:
    return int(db.scalar(sa.select(sa.func.coalesce(sa.func.sum(column), 0)).where(*where)) or 0)


_LIVE_REFUND = Refund.status != RefundStatus.CANCELED.value


def free_amount(db: Session, receipt_id: int) -> int:
    """What of one receipt is neither applied nor refunded (its share of the balance)."""
    received = _sum(db, Receipt.amount, Receipt.id == receipt_id)
    allocated = _sum(db, Allocation.amount, Allocation.receipt_id == receipt_id)
    refunded = _sum(db, Refund.amount, Refund.receipt_id == receipt_id, _LIVE_REFUND)
    return received - allocated - refunded


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
        return (
            sa.select(sa.func.coalesce(sa.func.sum(model.amount), 0))
            .where(model.account_id == account_id, *where)
            .scalar_subquery()
        )

    return sa.select(total(Receipt), total(Allocation), total(Refund, _LIVE_REFUND))


def account_balance(db: Session, account_id: int) -> int:
    return account_totals(db, account_id).balance


def order_allocated(db: Session, order_id: int) -> int:
    return _sum(db, Allocation.amount, Allocation.order_id == order_id)


def order_due(db: Session, order: Order) -> int:
    """What the customer still has to pay for the order (after the balance and earlier part payments)."""
    if order.status != OrderStatus.PENDING:
        return 0
    return max(order.amount - order_allocated(db, order.id), 0)


def invoice_paid_amount(db: Session, invoice_id: int) -> int:
    return _sum(db, Allocation.amount, Allocation.invoice_id == invoice_id)


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


def _locked(db: Session, model: Any, row_id: int, missing: str) -> Any:
    """The row, re-read and locked for the rest of the transaction (see the lock order in the module docstring)."""
    row = db.scalars(
        sa.select(model).where(model.id == row_id).with_for_update().execution_options(populate_existing=True)
    ).first()
    if row is None:
        raise LedgerError(missing)
    return row


def lock_receipt(db: Session, receipt_id: int) -> Receipt:
    return _locked(db, Receipt, receipt_id, "Поступление не найдено.")


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


def _lock_order(db: Session, order_id: int) -> Order:
    return _locked(db, Order, order_id, f"Заказ № {order_id} не найден.")


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
    from portal.documents import service as documents  # documents imports the ledger for invoice pages

    order = _lock_order(db, order_id)
    result = Applied(order.id)
    if order.account_id != receipt.account_id:
        result.problem = f"заказ № {order.id} другой компании"
        return result
    result.problem = billing.order_problem(db, order, now)
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
        billing.apply_paid_order(db, order.id, now=now, reference=receipt.reference, actor=actor)
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
) -> list[Applied]:
    """One payment naming several invoices pays them in the order named while the money lasts; the rest, and money
    for an invoice that can no longer be paid, stays on the account's balance with the reason flagged."""
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
    return results


# --- orders that can no longer be paid --------------------------------------------------------------------------


def release_order(db: Session, order: Order, *, reason: str, now: datetime, flag_receipts: bool = True) -> int:
    """Give back to the balance whatever was applied to an order that will never be activated; returns kopecks.

    `flag_receipts=False` when the owner chose it (a scheduled period canceled): nothing for staff to look at."""
    rows = db.execute(
        sa.select(Allocation.receipt_id, sa.func.sum(Allocation.amount))
        .where(Allocation.order_id == order.id)
        .group_by(Allocation.receipt_id)
    ).all()
    released = 0
    for receipt_id, amount in rows:
        if not amount:
            continue
        db.add(
            Allocation(
                receipt_id=receipt_id,
                account_id=order.account_id,
                order_id=order.id,
                amount=-int(amount),
                note=reason[:500],
                created_at=now,
            )
        )
        receipt = db.get(Receipt, receipt_id)
        if receipt is not None and flag_receipts:
            flag(receipt, f"Заказ № {order.id} закрыт ({reason.rstrip('.')}): {format_rub(int(amount))} на балансе")
        released += int(amount)
    if released:
        db.flush()
        record_audit(
            db,
            actor=None,
            account=order.account_id,
            action="payments.released",
            before={"order_id": order.id, "allocated": released},
            after={"order_id": order.id, "allocated": 0, "balance_added": released},
            reason=reason,
        )
    return released


@order_closed.connect
def _on_order_closed(order: Order, *, db: Session, reason: str, now: datetime, **_: Any) -> None:
    release_order(db, order, reason=reason, now=now)


@scheduled_period_canceled.connect
def _on_scheduled_period_canceled(order: Order, *, db: Session, reason: str, now: datetime, **_: Any) -> None:
    release_order(db, order, reason=reason, now=now, flag_receipts=False)


def release_part(db: Session, order: Order, amount: int, *, reason: str, now: datetime) -> int:
    """Give back to the balance `amount` of what was applied to a paid order (the part for rights that will never
    be granted), newest money first; returns kopecks. Flagged to staff: the order's УПД may name those rights."""
    rows = db.execute(
        sa.select(Allocation.receipt_id, sa.func.sum(Allocation.amount))
        .where(Allocation.order_id == order.id)
        .group_by(Allocation.receipt_id)
        .order_by(Allocation.receipt_id.desc())
    ).all()
    left = amount
    released = 0
    for receipt_id, applied in rows:
        take = min(int(applied or 0), left)
        if take <= 0:
            continue
        db.add(
            Allocation(
                receipt_id=receipt_id,
                account_id=order.account_id,
                order_id=order.id,
                amount=-take,
                note=reason[:500],
                created_at=now,
            )
        )
        receipt = db.get(Receipt, receipt_id)
        if receipt is not None:
            flag(
                receipt,
                f"Часть заказа № {order.id} не будет предоставлена ({reason.rstrip('.')}): {format_rub(take)} на "
                "балансе; проверьте, нужен ли УКД",
            )
        left -= take
        released += take
    if released:
        db.flush()
        record_audit(
            db,
            actor=None,
            account=order.account_id,
            action="payments.released",
            before={"order_id": order.id, "part": amount},
            after={"order_id": order.id, "balance_added": released},
            reason=reason,
        )
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


# --- refunds ------------------------------------------------------------------------------------------------------


def request_refund(
    db: Session, account_id: int, *, actor: Any, now: datetime, amount: int | None = None, reason: str = ""
) -> list[Refund]:
    """Set aside balance money to go back (all of it unless `amount`): one refund per receipt it came from, oldest
    first, so a card's money goes back to that card and a transfer's by transfer. Staff carry them out."""
    balance = account_balance(db, account_id)
    want = balance if amount is None else amount
    if want <= 0 or want > balance:
        raise LedgerError(f"На балансе {format_rub(balance)}: вернуть {format_rub(max(want, 0))} нельзя.")
    receipts = db.scalars(
        sa.select(Receipt)
        .where(Receipt.account_id == account_id)
        .order_by(Receipt.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    made: list[Refund] = []
    for receipt in receipts:
        if want <= 0:
            break
        part = min(free_amount(db, receipt.id), want)
        if part <= 0:
            continue
        refund = Refund(
            account_id=account_id,
            receipt_id=receipt.id,
            amount=part,
            method="card" if receipt.method in PROVIDER_RECEIPT_METHODS else "bank",
            status=RefundStatus.REQUESTED.value,
            reason=(reason or "Возврат остатка на балансе")[:1000],
            purpose=(
                f"Возврат излишне уплаченных денежных средств ({receipt.reference}). Без налога (НДС)"
                if receipt.method not in PROVIDER_RECEIPT_METHODS
                else None
            ),
            requested_by_user_id=getattr(actor, "id", None),
            created_at=now,
        )
        db.add(refund)
        made.append(refund)
        want -= part
    db.flush()
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="payments.refund_requested",
        before={"balance": balance},
        after={"balance": balance - sum(r.amount for r in made), "refunds": [r.id for r in made]},
        reason=reason or None,
    )
    return made


@dataclass
class RightsRefund:
    """What a refund of a paid order's rights did: the days given back, the refunds to carry out, the УКД."""

    cut: billing.RightsCut
    amount: int
    refunds: list[Refund]
    ukd_id: int | None = None


def refund_rights(
    db: Session,
    order_id: int,
    *,
    cut_on: date,
    amount: int,
    reason: str,
    actor: Any,
    now: datetime,
    config: Mapping[str, Any],
) -> RightsRefund:
    """Staff end a paid order's rights from `cut_on` and give back `amount` of what paid it.

    The money comes off the order (negative allocations, the newest receipt first) and leaves at once as refunds
    to carry out by the way it came, so it never sits on the balance to be spent again. Rights a УПД documented
    get a УКД lowering its cost; rights paid in advance whose УПД is not made yet simply never get one if none of
    their days remain. Nothing is committed."""
    from portal.documents import corrections
    from portal.documents.invoices import vat_phrase
    from portal.documents.models import Upd

    reason = " ".join((reason or "").split())
    if not reason:
        raise LedgerError("Укажите причину возврата: она попадёт в УКД и в историю.")
    order = _lock_order(db, order_id)
    paid = order_allocated(db, order.id)
    if order.status != OrderStatus.PAID or paid <= 0:
        raise LedgerError(f"Заказ № {order.id} не оплачен: возвращать нечего.")
    if not 0 < amount <= paid:
        raise LedgerError(f"По заказу № {order.id} можно вернуть от 0,01 ₽ до {format_rub(paid)}.")
    try:
        cut = billing.end_rights_early(db, order, cut_on, now=now, actor=actor, reason=reason)
    except billing.PurchaseError as exc:
        raise LedgerError(str(exc)) from exc

    invoice = db.scalars(sa.select(Invoice).where(Invoice.order_id == order.id)).first()
    if invoice is not None and invoice.upd_due_on is not None:
        if cut_on <= invoice.upd_due_on:
            invoice.upd_due_on = None  # the rights never begin: no УПД for rights not granted
        else:
            from portal.documents.service import number_due_upds

            number_due_upds(db, now=now, config=config)  # its day has come; the УКД below corrects it

    rows = db.execute(
        sa.select(Allocation.receipt_id, sa.func.sum(Allocation.amount))
        .where(Allocation.order_id == order.id)
        .group_by(Allocation.receipt_id)
        .order_by(Allocation.receipt_id.desc())
    ).all()
    left = amount
    refunds: list[Refund] = []
    for receipt_id, net in rows:
        part = min(int(net or 0), left)
        if part <= 0:
            continue
        receipt = db.get(Receipt, receipt_id)
        assert receipt is not None
        note = f"Возврат за неиспользованный период с {cut_on:%d.%m.%Y}: {reason}"[:500]
        db.add(
            Allocation(
                receipt_id=receipt_id,
                account_id=order.account_id,
                order_id=order.id,
                amount=-part,
                note=note,
                created_at=now,
            )
        )
        refund = Refund(
            account_id=order.account_id,
            receipt_id=receipt_id,
            amount=part,
            method="card" if receipt.method in PROVIDER_RECEIPT_METHODS else "bank",
            status=RefundStatus.REQUESTED.value,
            reason=note[:1000],
            purpose=(
                f"Возврат денежных средств за неиспользованный период по заказу № {order.id} ({receipt.reference}). "
                + vat_phrase(part, invoice.vat_rate if invoice is not None else None)
                if receipt.method not in PROVIDER_RECEIPT_METHODS
                else None
            ),
            requested_by_user_id=getattr(actor, "id", None),
            created_at=now,
        )
        db.add(refund)
        refunds.append(refund)
        left -= part
        if left <= 0:
            break
    db.flush()
    result = RightsRefund(cut=cut, amount=amount, refunds=refunds)
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == invoice.id)).first() if invoice is not None else None
    if upd is not None:
        ukd = corrections.number_ukd(
            db, upd, order, decrease=amount, cut_on=cut_on, reason=reason, now=now, config=config, actor=actor
        )
        result.ukd_id = ukd.id
    record_audit(
        db,
        actor=actor,
        account=order.account_id,
        action="payments.rights_refunded",
        before={"order_id": order.id, "allocated": paid},
        after={
            "order_id": order.id,
            "allocated": paid - amount,
            "refunds": [r.id for r in refunds],
            "cut_on": cut_on.isoformat(),
        },
        reason=reason,
    )
    return result


def _lock_refund(db: Session, refund_id: int) -> Refund:
    refund = _locked(db, Refund, refund_id, "Возврат не найден.")
    if refund.status not in (RefundStatus.REQUESTED.value, RefundStatus.PENDING.value):
        raise LedgerError(f"Возврат № {refund.id} уже {refund.status_title.lower()}.")
    return refund


def refund_through_provider(
    db: Session, refund_id: int, *, provider: Any, customer: Any, actor: Any, now: datetime
) -> Refund:
    """Staff send a card refund to the provider (idempotent by the refund's own key); succeeded once it accepts."""
    from portal.payments.models import Payment

    refund = _lock_refund(db, refund_id)
    receipt = db.get(Receipt, refund.receipt_id) if refund.receipt_id else None
    payment = db.get(Payment, receipt.payment_id) if receipt is not None and receipt.payment_id else None
    if payment is None or not payment.provider_payment_id:
        raise LedgerError("Эти деньги пришли не картой: верните их переводом и отметьте возврат выполненным.")
    refund.provider_refund_id = provider.refund(
        payment.provider_payment_id, refund.amount, f"refund-{refund.id}", customer
    )
    refund.status = RefundStatus.SUCCEEDED.value
    refund.done_at = now
    refund.done_by_user_id = getattr(actor, "id", None)
    record_audit(
        db,
        actor=actor,
        account=refund.account_id,
        action="payments.refunded",
        before={"refund_id": refund.id, "status": RefundStatus.REQUESTED.value},
        after={"refund_id": refund.id, "status": refund.status, "amount": refund.amount, "provider": payment.provider},
    )
    return refund


def complete_bank_refund(db: Session, refund_id: int, *, actor: Any, reference: str, now: datetime) -> Refund:
    """Staff record that the accountant has sent the transfer back («п/п № 301 от 02.12.2026»)."""
    reference = " ".join((reference or "").split())
    if not reference:
        raise LedgerError("Укажите платёжное поручение, которым деньги отправлены обратно.")
    refund = _lock_refund(db, refund_id)
    refund.status = RefundStatus.SUCCEEDED.value
    refund.method = "bank"
    refund.done_at = now
    refund.done_by_user_id = getattr(actor, "id", None)
    refund.reason = f"{refund.reason or ''} Отправлено: {reference}".strip()[:1000]
    record_audit(
        db,
        actor=actor,
        account=refund.account_id,
        action="payments.refunded",
        before={"refund_id": refund.id, "status": RefundStatus.REQUESTED.value},
        after={"refund_id": refund.id, "status": refund.status, "amount": refund.amount, "reference": reference},
    )
    return refund


def cancel_refund(db: Session, refund_id: int, *, actor: Any, reason: str, now: datetime) -> Refund:
    """A refund that will not be made: its money is on the balance again."""
    refund = _lock_refund(db, refund_id)
    refund.status = RefundStatus.CANCELED.value
    refund.done_at = now
    refund.done_by_user_id = getattr(actor, "id", None)
    record_audit(
        db,
        actor=actor,
        account=refund.account_id,
        action="payments.refund_canceled",
        before={"refund_id": refund.id, "status": RefundStatus.REQUESTED.value},
        after={"refund_id": refund.id, "status": refund.status, "amount": refund.amount},
        reason=reason or None,
    )
    return refund


def list_refunds(db: Session, account_id: int | None = None, *, open_only: bool = False) -> list[Refund]:
    q = sa.select(Refund).order_by(Refund.id.desc())
    if account_id is not None:
        q = q.where(Refund.account_id == account_id)
    if open_only:
        q = q.where(Refund.status.in_([RefundStatus.REQUESTED.value, RefundStatus.PENDING.value]))
    return list(db.scalars(q))


# --- one history, and the report for the books --------------------------------------------------------------------


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
    from portal.payments.models import LineStatus, StatementLine
    from portal.timeutil import msk_midnight

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
    refunded = by_account(Refund, Refund.created_at, _LIVE_REFUND)
    by_method = {
        m: int(s or 0)
        for m, s in db.execute(
            sa.select(Receipt.method, sa.func.sum(Receipt.amount))
            .where(Receipt.created_at >= since, Receipt.created_at < until)
            .group_by(Receipt.method)
        ).all()
    }
    unmatched = _sum(
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


def record_provider_refund(
    db: Session, *, provider: str, refund_id: str, payment_id: str, amount: int, now: datetime
) -> str:
    """A refund the provider reports (one staff sent from here, or one made in the provider's own dashboard):
    recorded once against the card money it returns. Returns what came of it, for the notification log."""
    existing = db.scalars(sa.select(Refund).where(Refund.provider_refund_id == refund_id).with_for_update()).first()
    if existing is not None:
        if existing.status != RefundStatus.SUCCEEDED.value:
            existing.status = RefundStatus.SUCCEEDED.value
            existing.done_at = now
        return "refund_known"
    receipt = db.scalars(
        sa.select(Receipt)
        .where(Receipt.source_key == f"card:{provider}:{payment_id}")
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if receipt is None:
        log.warning("refund %s of an unknown payment %s:%s", refund_id, provider, payment_id)
        return "refund_unknown_payment"
    if amount <= 0 or free_amount(db, receipt.id) < amount:
        # Money already applied to an order went back past the portal: staff decide (and a УКД may be due).
        flag(
            receipt,
            f"В платёжной системе сделан возврат {format_rub(max(amount, 0))} ({refund_id}) сверх остатка на балансе",
        )
        return "refund_flagged"
    db.add(
        Refund(
            account_id=receipt.account_id,
            receipt_id=receipt.id,
            amount=amount,
            method="card",
            status=RefundStatus.SUCCEEDED.value,
            provider_refund_id=refund_id[:64],
            reason="Возврат, сделанный в платёжной системе",
            created_at=now,
            done_at=now,
        )
    )
    db.flush()
    record_audit(
        db,
        actor=None,
        account=receipt.account_id,
        action="payments.refunded",
        before={"receipt_id": receipt.id},
        after={"receipt_id": receipt.id, "amount": amount, "provider_refund_id": refund_id},
        reason="Возврат, о котором сообщила платёжная система",
    )
    return "refund_recorded"
