"""Documents services: requisites, the paper for money the ledger applied, and one document or file of an account.

The documents page's list is in `documents.listing`, periods and their ZIP in `documents.archive`.

Support's console calls `mark_invoice_paid`, `cancel_invoice`, `link_statement_line`, `dismiss_statement_line`
and `list_unmatched_lines`. The writing ones commit: a payment is committed first and the УПД formed right after
it, so a failure to render can never undo a payment (a pending УПД is formed by the `billing tick` hook later).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_request_context
from sqlalchemy.orm import Session

from portal.audit import record_audit
from portal.billing.models import Order, OrderStatus
from portal.billing.orders import cancel_order
from portal.billing.signals import order_closed, scheduled_period_canceled
from portal.documents import corrections
from portal.documents.invoices import DocumentsError
from portal.documents.models import (
    AdvanceInvoice,
    Invoice,
    InvoiceStatus,
    Requisites,
    StoredFile,
    Ukd,
    Upd,
    UpdStatus,
)
from portal.documents.requisites import RequisitesData, clean_requisites
from portal.documents.store import get_store
from portal.documents.upd import number_upd, try_form_upd
from portal.tasks import enqueue
from portal.timeutil import msk_date

log = logging.getLogger(__name__)


def _config(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return config if config is not None else current_app.config


# --- requisites -------------------------------------------------------------------------------------


def get_requisites(db: Session, account_id: int) -> Requisites | None:
    return db.scalars(sa.select(Requisites).where(Requisites.account_id == account_id)).first()


def save_requisites(db: Session, *, actor: Any, account_id: int, data: Mapping[str, Any], now: datetime) -> Requisites:
    """Check and save the account's requisites, auditing before → after; raises RequisitesInvalid. Does not commit."""
    clean: RequisitesData = clean_requisites(data)
    row = get_requisites(db, account_id)
    before = row.as_dict() if row is not None else None
    if row is None:
        row = Requisites(account_id=account_id)
        db.add(row)
    for key, value in clean.as_dict().items():
        setattr(row, key, value)
    after = row.as_dict()
    if before == after:
        return row
    row.updated_at = now
    row.updated_by_user_id = actor.id if actor is not None else None
    db.flush()
    changed = [k for k in after if before is None or before.get(k) != after[k]]  # a list: the form's order, every time
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="documents.requisites_saved",
        before={k: before[k] for k in changed} if before is not None else None,
        after={k: after[k] for k in changed},
    )
    return row


# --- paper for money the ledger applied -------------------------------------------------------------------


def lock_invoice(db: Session, invoice_id: int) -> Invoice:
    """The invoice, locked for the rest of the transaction (paying and cancelling it queue here)."""
    invoice = db.scalars(
        sa.select(Invoice).where(Invoice.id == invoice_id).with_for_update().execution_options(populate_existing=True)
    ).first()
    if invoice is None:
        raise DocumentsError("Счёт не найден.")
    return invoice


def invoice_paid(
    db: Session,
    invoice: Invoice,
    *,
    order: Order,
    actor: Any | None,
    paid_on: date,
    reference: str,
    payment_doc: Mapping[str, Any],
    now: datetime,
    config: Mapping[str, Any],
) -> Upd | None:
    """The ledger paid the invoice's order in full: mark the invoice paid and number its УПД, dated the day the
    rights begin — today, or for rights that begin later, on that day by the tick (numbers follow dates). No commit."""
    before = {"invoice": invoice.number, "status": invoice.status}
    invoice.status = InvoiceStatus.PAID.value
    invoice.paid_at = now
    invoice.paid_on = paid_on
    invoice.payment_reference = reference[:200]
    rights_begin = order.starts_on
    upd = None
    if rights_begin <= msk_date(now):
        upd = number_upd(db, invoice, order, doc_date=rights_begin, payment_doc=payment_doc, now=now, config=config)
    else:
        invoice.upd_due_on = rights_begin
        invoice.upd_payment_doc = {**payment_doc, "date": payment_doc["date"].isoformat()}
        if corrections.needs_advance_invoice(invoice, order, paid_on):
            corrections.number_advance_invoice(
                db, invoice, order, payment_doc=payment_doc, now=now, config=config, actor=actor
            )
    record_audit(
        db,
        actor=actor,
        account=invoice.account_id,
        action="documents.invoice_paid",
        before=before,
        after={
            "invoice": invoice.number,
            "status": invoice.status,
            "amount": invoice.amount,
            "paid_on": paid_on.isoformat(),
            "reference": reference,
            "upd": upd.number if upd is not None else f"в день начала прав, {rights_begin:%d.%m.%Y}",
        },
    )
    return upd


def number_due_upds(db: Session, *, now: datetime, config: Mapping[str, Any]) -> list[str]:
    """УПД whose day has come (rights paid in advance begin today): numbered in date order, formed by the tick."""
    today = msk_date(now)
    query = (
        sa.select(Invoice)
        .where(Invoice.upd_due_on.is_not(None), Invoice.upd_due_on <= today)
        .order_by(Invoice.upd_due_on, Invoice.id)
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    done = []
    for invoice in db.scalars(query.execution_options(populate_existing=True)).all():
        order = db.get(Order, invoice.order_id)
        assert order is not None
        doc = dict(invoice.upd_payment_doc or {})
        doc["date"] = date.fromisoformat(doc["date"]) if doc.get("date") else invoice.paid_on
        upd = number_upd(
            db,
            invoice,
            order,
            doc_date=invoice.upd_due_on,
            payment_doc=doc,
            now=now,
            config=config,
            advance_invoices=corrections.advance_invoices_for(db, invoice.id),
        )
        invoice.upd_due_on = None
        done.append(f"УПД № {upd.number} от {upd.doc_date:%d.%m.%Y} пронумерован")
    return done


def form_upds_now(db: Session, upd_ids: list[int], *, now: datetime, config: Mapping[str, Any]) -> None:
    """After the payment is committed, the documents it numbered are rendered: by a task when a web request paid
    (a notification, staff marking, a refund — the request answers at once), here when already outside one (a
    statement import job, the CLI). Either way one that fails stays pending for the tick's retry."""
    if has_request_context():
        # A cycle: documents.tasks imports this module for the work its task does.
        from portal.documents.tasks import form_documents_task

        enqueue(form_documents_task, list(upd_ids))
        return
    form_documents(db, upd_ids, now=now, config=config)


def form_documents(db: Session, upd_ids: list[int], *, now: datetime, config: Mapping[str, Any]) -> None:
    """Render each УПД and commit; one that fails stays pending for the retry."""
    for upd_id in upd_ids:
        upd = db.get(Upd, upd_id)
        if upd is not None and upd.status == UpdStatus.PENDING:
            try_form_upd(db, upd, now=now, config=config)
            db.commit()
    # An advance invoice or a УКД numbered with the same payment or refund is rendered now too, not at the tick.
    corrections.form_pending_corrections(db, now=now, config=config, limit=10)


def cancel_invoice(db: Session, invoice_id: int, *, actor: Any, reason: str, now: datetime) -> Invoice:
    """Staff cancel an unpaid invoice: its order is canceled, which annuls the invoice (the number stays used, never
    reissued) and gives any part payment back to the balance. Commits."""

    reason = " ".join((reason or "").split())
    if not reason:
        raise DocumentsError("Укажите причину отмены счёта.")
    invoice = lock_invoice(db, invoice_id)
    if invoice.status == InvoiceStatus.PAID:
        raise DocumentsError(f"Счёт № {invoice.number} уже оплачен, его нельзя отменить.")
    if invoice.status == InvoiceStatus.CANCELED:
        return invoice
    order = db.get(Order, invoice.order_id)
    if order is not None and order.status == OrderStatus.PENDING:
        cancel_order(db, order.id, actor=actor, reason=reason, now=now)
    else:
        annul_invoice(db, invoice, actor=actor, reason=reason, now=now)
    db.commit()
    return invoice


def annul_invoice(db: Session, invoice: Invoice, *, actor: Any | None, reason: str, now: datetime) -> None:
    """An invoice whose order will never be paid: annulled, so nothing is paid by it and its QR is not offered."""
    if invoice.status != InvoiceStatus.ISSUED:
        return
    invoice.status = InvoiceStatus.CANCELED.value
    invoice.canceled_at = now
    invoice.cancel_reason = reason
    record_audit(
        db,
        actor=actor,
        account=invoice.account_id,
        action="documents.invoice_canceled",
        before={"invoice": invoice.number, "status": InvoiceStatus.ISSUED.value},
        after={"invoice": invoice.number, "status": InvoiceStatus.CANCELED.value},
        reason=reason,
    )


def _lock_order_invoice(db: Session, order_id: int) -> Invoice | None:
    """The order's invoice, if it has one, locked for the rest of the transaction as `lock_invoice` locks it."""
    query = sa.select(Invoice).where(Invoice.order_id == order_id).with_for_update()
    return db.scalars(query.execution_options(populate_existing=True)).first()


@order_closed.connect
def _on_order_closed(order: Order, *, db: Session, reason: str, now: datetime, **_: Any) -> None:
    invoice = _lock_order_invoice(db, order.id)
    if invoice is not None:
        annul_invoice(db, invoice, actor=None, reason=reason, now=now)


@scheduled_period_canceled.connect
def _on_scheduled_period_canceled(order: Order, *, db: Session, reason: str, now: datetime, **_: Any) -> None:
    """Rights paid in advance that will never begin: the УПД due on their first day is not formed."""
    invoice = _lock_order_invoice(db, order.id)
    if invoice is None or invoice.upd_due_on is None:
        return
    due = invoice.upd_due_on
    invoice.upd_due_on = None
    record_audit(
        db,
        actor=None,
        account=invoice.account_id,
        action="documents.upd_not_due",
        before={"invoice": invoice.number, "upd_due_on": due.isoformat()},
        after={"invoice": invoice.number, "upd_due_on": None},
        reason=reason,
    )


# --- reads for the pages ----------------------------------------------------------------------------


def get_invoice(db: Session, account_id: int, invoice_id: int) -> Invoice | None:
    return db.scalars(sa.select(Invoice).where(Invoice.id == invoice_id, Invoice.account_id == account_id)).first()


def get_upd(db: Session, account_id: int, upd_id: int) -> Upd | None:
    return db.scalars(sa.select(Upd).where(Upd.id == upd_id, Upd.account_id == account_id)).first()


def get_correction(db: Session, account_id: int, kind: str, doc_id: int) -> AdvanceInvoice | Ukd | None:
    """An advance invoice or a УКД of the account (None for another company's)."""
    model = AdvanceInvoice if kind == "advance" else Ukd
    return db.scalars(sa.select(model).where(model.id == doc_id, model.account_id == account_id)).first()


def get_upd_for_invoice(db: Session, invoice_id: int) -> Upd | None:
    return db.scalars(sa.select(Upd).where(Upd.invoice_id == invoice_id)).first()


def get_file(db: Session, account_id: int, file_id: int | None) -> StoredFile | None:
    if file_id is None:
        return None
    return db.scalars(
        sa.select(StoredFile).where(StoredFile.id == file_id, StoredFile.account_id == account_id)
    ).first()


def read_file(stored: StoredFile, config: Mapping[str, Any] | None = None) -> bytes:
    """The document's bytes, exactly as issued (the store checks them against the recorded SHA-256)."""
    return get_store(_config(config)).read(stored.path, stored.sha256)
