"""What staff do with bank money: an invoice marked paid by hand, a statement line linked, credited or dismissed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account
from portal.audit import record_audit
from portal.documents.invoices import DocumentsError
from portal.documents.models import Invoice, InvoiceStatus
from portal.documents.service import _config, form_upds_now, lock_invoice
from portal.documents.upd import payment_doc_from_reference
from portal.money import format_rub
from portal.payments import ledger
from portal.payments.bank import apply_line, receipt_for_line
from portal.payments.models import LineStatus, ReceiptMethod, StatementLine


def _required(text: str | None, missing: str) -> str:
    """What staff wrote, its spaces collapsed; DocumentsError(`missing`) when they wrote nothing."""
    text = " ".join((text or "").split())
    if not text:
        raise DocumentsError(missing)
    return text


def _lock_line(db: Session, line_id: int) -> StatementLine:
    line: StatementLine = ledger.lock_row(db, StatementLine, line_id, "Строка выписки не найдена.", DocumentsError)
    if line.status != LineStatus.UNMATCHED:
        raise DocumentsError(f"Платёж {line.reference} уже разобран: {line.status_title.lower()}.")
    return line


def _resolve(
    db: Session,
    line: StatementLine,
    status: LineStatus,
    *,
    actor: Any,
    account: int | None,
    note: str,
    action: str,
    reason: str,
    now: datetime,
    **detail: Any,
) -> None:
    """The unmatched line resolved by staff with `note`, in the audit trail with `detail`."""
    line.status = status.value
    line.resolved_at = now
    line.resolved_by_user_id = actor.id if actor is not None else None
    line.resolution_note = note
    record_audit(
        db,
        actor=actor,
        account=account,
        action=action,
        before={"line_id": line.id, "status": LineStatus.UNMATCHED.value, "reason": line.reason},
        after={"line_id": line.id, "status": line.status, **detail},
        reason=reason,
    )


def _payable(db: Session, invoice: Invoice) -> None:
    if invoice.status == InvoiceStatus.PAID:
        raise DocumentsError(f"Счёт № {invoice.number} уже оплачен ({invoice.payment_reference}).")
    if invoice.status == InvoiceStatus.CANCELED:
        raise DocumentsError(f"Счёт № {invoice.number} аннулирован: оплату по нему нельзя провести.")


def mark_invoice_paid(
    db: Session,
    invoice_id: int,
    *,
    actor: Any,
    bank_reference: str,
    paid_on: date,
    now: datetime,
    config: Mapping[str, Any] | None = None,
) -> Invoice:
    """Staff record a bank payment of an invoice by hand (e.g. «п/п № 512 от 25.11.2026»): the rest of the invoice
    is received and applied through the ledger, as an import would. Commits.

    Raises DocumentsError (Russian message) if the invoice is paid or annulled, or its order cannot take money.
    """
    cfg = _config(config)
    reference = _required(bank_reference, "Укажите платёжный документ, например «п/п № 512 от 25.11.2026».")
    invoice = lock_invoice(db, invoice_id)
    _payable(db, invoice)
    amount = ledger.invoice_remaining(db, invoice)
    receipt, created = ledger.record_receipt(
        db,
        account_id=invoice.account_id,
        method=ReceiptMethod.STAFF.value,
        amount=amount,
        received_on=paid_on,
        source_key=f"staff:{invoice.id}:{reference}",
        reference=reference,
        actor=actor,
        now=now,
    )
    if not created:
        raise DocumentsError(f"Платёж «{reference}» по счёту № {invoice.number} уже записан.")
    (step,), _ = ledger.pay_invoices(
        db,
        receipt,
        [invoice],
        now=now,
        config=cfg,
        actor=actor,
        payment_doc=payment_doc_from_reference(reference, paid_on, amount),
    )
    if step.problem is not None:
        db.rollback()
        raise DocumentsError(f"Заказ по счёту № {invoice.number} не может быть оплачен: {step.problem}.")
    upd_id = step.upd_id
    db.commit()
    if upd_id is not None:
        form_upds_now(db, [upd_id], now=now, config=cfg)
    return invoice


class AmountMismatch(DocumentsError):
    """The payment's amount differs from what the invoice still needs; staff must confirm to link anyway."""


def link_statement_line(
    db: Session,
    line_id: int,
    invoice_id: int,
    *,
    actor: Any,
    confirm_amount_mismatch: bool,
    now: datetime,
    config: Mapping[str, Any] | None = None,
) -> StatementLine:
    """Staff link an unmatched payment to an invoice: recorded for its company and applied as by the import (a short
    payment pays part, an overpayment leaves the rest on the balance). Commits.

    A different amount raises AmountMismatch unless `confirm_amount_mismatch` is True.
    """
    cfg = _config(config)
    line = _lock_line(db, line_id)
    invoice = lock_invoice(db, invoice_id)
    _payable(db, invoice)
    remaining = ledger.invoice_remaining(db, invoice)
    if line.amount != remaining and not confirm_amount_mismatch:
        raise AmountMismatch(
            f"Сумма платежа {format_rub(line.amount)} не равна сумме к оплате по счёту № {invoice.number} "
            f"{format_rub(remaining)}. Подтвердите: недоплата останется к оплате, переплата — на балансе компании."
        )
    _, upd_ids = apply_line(db, line, [invoice], actor=actor, now=now, config=cfg, note=None)
    note = f"Привязан к счёту № {invoice.number}" + (
        f" при расхождении суммы ({format_rub(line.amount)} вместо {format_rub(remaining)})"
        if line.amount != remaining
        else ""
    )
    _resolve(
        db,
        line,
        LineStatus.LINKED,
        actor=actor,
        account=invoice.account_id,
        note=note,
        action="documents.statement_line_linked",
        now=now,
        reason=note,
        invoice=invoice.number,
        amount=line.amount,
    )
    db.commit()
    form_upds_now(db, upd_ids, now=now, config=cfg)
    return line


def credit_statement_line(
    db: Session, line_id: int, account_id: int, *, actor: Any, reason: str, now: datetime
) -> StatementLine:
    """Staff decide an unmatched payment is a company's money with no invoice to pay: it goes to that company's
    balance (applied at its next order, or refunded). Commits."""
    reason = _required(reason, "Укажите, почему платёж зачисляется на баланс этой компании.")
    line = _lock_line(db, line_id)
    if db.get(Account, account_id) is None:
        raise DocumentsError("Компания не найдена.")
    receipt_for_line(db, line, account_id, method=ReceiptMethod.BANK.value, actor=actor, now=now)
    _resolve(
        db,
        line,
        LineStatus.CREDITED,
        actor=actor,
        account=account_id,
        note=f"Зачислен на баланс компании № {account_id}: {reason}",
        action="payments.statement_line_credited",
        now=now,
        reason=reason,
        amount=line.amount,
    )
    db.commit()
    return line


def dismiss_statement_line(db: Session, line_id: int, *, actor: Any, reason: str, now: datetime) -> StatementLine:
    """Staff decide an unmatched payment is not the portal's money (a loan repaid, another contract). Commits."""
    reason = _required(reason, "Укажите, почему платёж не относится к счёту.")
    line = _lock_line(db, line_id)
    _resolve(
        db,
        line,
        LineStatus.DISMISSED,
        actor=actor,
        account=None,
        note=reason,
        action="documents.statement_line_dismissed",
        now=now,
        reason=reason,
        payment=line.reference,
        amount=line.amount,
    )
    db.commit()
    return line


def list_unmatched_lines(db: Session) -> list[StatementLine]:
    """Incoming payments that activated nothing and wait for support, oldest first, each with its reason."""
    return list(
        db.scalars(
            sa.select(StatementLine)
            .where(StatementLine.status == LineStatus.UNMATCHED.value)
            .order_by(StatementLine.doc_date, StatementLine.id)
        )
    )


def list_import_lines(db: Session, import_id: int, *, matched: bool) -> list[StatementLine]:
    """The lines one import matched automatically (or not), in file order: the result an upload page shows."""
    q = sa.select(StatementLine).where(StatementLine.import_id == import_id).order_by(StatementLine.id)
    if matched:
        q = q.where(StatementLine.status == LineStatus.MATCHED.value)
    return list(db.scalars(q.limit(500)))
