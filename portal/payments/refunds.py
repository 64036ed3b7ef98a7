"""Refunds: balance money set aside to go back, a paid order's rights refunded, and staff carrying refunds out.

Money leaves only by the way it came (a card's to the card, a transfer's by transfer), one refund per receipt;
a refund the provider reports is recorded once against the card money it returns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit import record_audit
from portal.billing.models import OrderStatus
from portal.billing.settlement import RightsCut, end_rights_early
from portal.billing.subscriptions import PurchaseError
from portal.documents import corrections
from portal.documents.invoices import vat_phrase
from portal.documents.models import Invoice, Upd
from portal.documents.service import number_due_upds
from portal.money import format_rub
from portal.payments.ledger import (
    LedgerError,
    account_balance,
    applied_by_receipt,
    flag,
    free_amount,
    give_back,
    lock_order,
    lock_row,
    order_allocated,
)
from portal.payments.models import PROVIDER_RECEIPT_METHODS, Payment, Receipt, Refund, RefundStatus

log = logging.getLogger(__name__)


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
        refund = _new_refund(
            account_id,
            receipt,
            part,
            reason=reason or "Возврат остатка на балансе",
            purpose=f"Возврат излишне уплаченных денежных средств ({receipt.reference}). Без налога (НДС)",
            actor=actor,
            now=now,
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

    cut: RightsCut
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
    reason = " ".join((reason or "").split())
    if not reason:
        raise LedgerError("Укажите причину возврата: она попадёт в УКД и в историю.")
    order = lock_order(db, order_id)
    paid = order_allocated(db, order.id)
    if order.status != OrderStatus.PAID or paid <= 0:
        raise LedgerError(f"Заказ № {order.id} не оплачен: возвращать нечего.")
    if not 0 < amount <= paid:
        raise LedgerError(f"По заказу № {order.id} можно вернуть от 0,01 ₽ до {format_rub(paid)}.")
    try:
        cut = end_rights_early(db, order, cut_on, now=now, actor=actor, reason=reason)
    except PurchaseError as exc:
        raise LedgerError(str(exc)) from exc

    invoice = db.scalars(sa.select(Invoice).where(Invoice.order_id == order.id)).first()
    if invoice is not None and invoice.upd_due_on is not None:
        if cut_on <= invoice.upd_due_on:
            invoice.upd_due_on = None  # the rights never begin: no УПД for rights not granted
        else:
            number_due_upds(db, now=now, config=config)  # its day has come; the УКД below corrects it

    left = amount
    refunds: list[Refund] = []
    for receipt_id, net in applied_by_receipt(db, order.id, newest_first=True):
        part = min(int(net or 0), left)
        if part <= 0:
            continue
        receipt = db.get(Receipt, receipt_id)
        assert receipt is not None
        note = f"Возврат за неиспользованный период с {cut_on:%d.%m.%Y}: {reason}"[:500]
        give_back(db, order, receipt_id, part, note=note, now=now)
        refund = _new_refund(
            order.account_id,
            receipt,
            part,
            reason=note,
            purpose=(
                f"Возврат денежных средств за неиспользованный период по заказу № {order.id} ({receipt.reference}). "
                + vat_phrase(part, invoice.vat_rate if invoice is not None else None)
            ),
            actor=actor,
            now=now,
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
    refund = lock_row(db, Refund, refund_id, "Возврат не найден.")
    if refund.status not in (RefundStatus.REQUESTED.value, RefundStatus.PENDING.value):
        raise LedgerError(f"Возврат № {refund.id} уже {refund.status_title.lower()}.")
    return refund


def refund_through_provider(
    db: Session, refund_id: int, *, provider: Any, customer: Any, actor: Any, now: datetime
) -> Refund:
    """Staff send a card refund to the provider (idempotent by the refund's own key); succeeded once it accepts."""
    refund = _lock_refund(db, refund_id)
    receipt = db.get(Receipt, refund.receipt_id) if refund.receipt_id else None
    payment = db.get(Payment, receipt.payment_id) if receipt is not None and receipt.payment_id else None
    if payment is None or not payment.provider_payment_id:
        raise LedgerError("Эти деньги пришли не картой: верните их переводом и отметьте возврат выполненным.")
    refund.provider_refund_id = provider.refund(
        payment.provider_payment_id, refund.amount, f"refund-{refund.id}", customer
    )
    return _close_refund(db, refund, RefundStatus.SUCCEEDED, actor=actor, now=now, provider=payment.provider)


def complete_bank_refund(db: Session, refund_id: int, *, actor: Any, reference: str, now: datetime) -> Refund:
    """Staff record that the accountant has sent the transfer back («п/п № 301 от 02.12.2026»)."""
    reference = " ".join((reference or "").split())
    if not reference:
        raise LedgerError("Укажите платёжное поручение, которым деньги отправлены обратно.")
    refund = _lock_refund(db, refund_id)
    refund.method = "bank"
    refund.reason = f"{refund.reason or ''} Отправлено: {reference}".strip()[:1000]
    return _close_refund(db, refund, RefundStatus.SUCCEEDED, actor=actor, now=now, reference=reference)


def cancel_refund(db: Session, refund_id: int, *, actor: Any, reason: str, now: datetime) -> Refund:
    """A refund that will not be made: its money is on the balance again."""
    refund = _lock_refund(db, refund_id)
    return _close_refund(
        db,
        refund,
        RefundStatus.CANCELED,
        actor=actor,
        now=now,
        action="payments.refund_canceled",
        reason=reason or None,
    )


def _close_refund(
    db: Session,
    refund: Refund,
    status: RefundStatus,
    *,
    actor: Any,
    now: datetime,
    action: str = "payments.refunded",
    reason: str | None = None,
    **detail: Any,
) -> Refund:
    """The refund done (or canceled) by `actor` now, in the audit trail with `detail`."""
    refund.status = status.value
    refund.done_at = now
    refund.done_by_user_id = getattr(actor, "id", None)
    record_audit(
        db,
        actor=actor,
        account=refund.account_id,
        action=action,
        before={"refund_id": refund.id, "status": RefundStatus.REQUESTED.value},
        after={"refund_id": refund.id, "status": refund.status, "amount": refund.amount, **detail},
        reason=reason,
    )
    return refund


def _new_refund(
    account_id: int, receipt: Receipt, amount: int, *, reason: str, purpose: str, actor: Any, now: datetime
) -> Refund:
    """A refund of a receipt's money to carry out the way it came: a card's to the card, a transfer's by a transfer
    whose payment order says `purpose`."""
    by_provider = receipt.method in PROVIDER_RECEIPT_METHODS
    return Refund(
        account_id=account_id,
        receipt_id=receipt.id,
        amount=amount,
        method="card" if by_provider else "bank",
        status=RefundStatus.REQUESTED.value,
        reason=reason[:1000],
        purpose=None if by_provider else purpose,
        requested_by_user_id=getattr(actor, "id", None),
        created_at=now,
    )


def list_refunds(db: Session, account_id: int | None = None, *, open_only: bool = False) -> list[Refund]:
    q = sa.select(Refund).order_by(Refund.id.desc())
    if account_id is not None:
        q = q.where(Refund.account_id == account_id)
    if open_only:
        q = q.where(Refund.status.in_([RefundStatus.REQUESTED.value, RefundStatus.PENDING.value]))
    return list(db.scalars(q))


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
