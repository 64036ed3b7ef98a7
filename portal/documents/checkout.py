"""Paying an order by invoice: at checkout, and for a scheduled change whose payment the tick has just opened."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.billing.models import Order, OrderStatus
from portal.billing.orders import cancel_order
from portal.documents.invoices import RequisitesMissing, TooManyOpenInvoices, issue_invoice
from portal.documents.models import Invoice
from portal.documents.service import get_requisites
from portal.payments import ledger


@dataclass(frozen=True)
class InvoiceCheckout:
    """What paying an order by invoice came to: the invoice issued, or none because the balance paid the order, or
    none because the company has no requisites yet (the order is cancelled: the checkout makes a new one)."""

    invoice: Invoice | None = None
    requisites_missing: bool = False


def checkout_by_invoice(
    db: Session, order: Order, *, actor: Any, now: datetime, config: Mapping[str, Any]
) -> InvoiceCheckout:
    """Issue the invoice for the order (the balance pays first). Commits, except when requisites are missing.

    Raises TooManyOpenInvoices, the order cancelled and committed, when another tab or accountant reached
    MAX_OPEN_INVOICES between billing's precheck and here: the order is not left pending."""
    if get_requisites(db, order.account_id) is None:
        # The checkout makes a new order when the payer comes back; this one would only linger as «pending».
        cancel_order(db, order.id, actor=actor, reason="Счёт не выставлен: не указаны реквизиты", now=now)
        return InvoiceCheckout(requisites_missing=True)
    if ledger.settle_from_balance(db, order, now=now, config=config, actor=actor):
        db.commit()
        return InvoiceCheckout()
    try:
        invoice = issue_invoice(db, order, actor=actor, now=now, config=config)
    except TooManyOpenInvoices:
        db.rollback()
        cancel_order(db, order.id, actor=actor, reason="Счёт не выставлен: много неоплаченных счетов", now=now)
        db.commit()
        raise
    db.commit()
    return InvoiceCheckout(invoice=invoice)


def issue_scheduled_invoices(db: Session, *, now: datetime, config: Mapping[str, Any]) -> list[str]:
    """`billing tick`: a smaller plan scheduled unpaid, whose payment the tick has just opened, gets its invoice
    (the balance pays first, as at checkout). Once only: an order with an invoice, or paid, is not picked again;
    without requisites or with too many open invoices it stays pending and the dashboard and notices say so."""
    due = sa.select(Order).where(
        Order.status == OrderStatus.PENDING,
        Order.payer_type == "invoice",
        Order.opens_on.is_not(None),
        ~sa.exists().where(Invoice.order_id == Order.id),
    )
    ids = list(db.scalars(due.with_only_columns(Order.id).order_by(Order.id)))
    done = []
    for order_id in ids:
        # One order per transaction, locked and checked again: a tick on another server skips it meanwhile.
        order = db.scalars(
            due.where(Order.id == order_id).with_for_update(skip_locked=True).execution_options(populate_existing=True)
        ).first()
        if order is None:
            db.rollback()
            continue
        if ledger.settle_from_balance(db, order, now=now, config=config, actor=None):
            db.commit()
            done.append(f"заказ № {order.id} оплачен с баланса компании")
            continue
        try:
            invoice = issue_invoice(db, order, actor=None, now=now, config=config)
        except (RequisitesMissing, TooManyOpenInvoices) as exc:
            db.rollback()
            done.append(f"заказ № {order.id}: счёт не выставлен ({exc})")
            continue
        db.commit()
        done.append(f"заказ № {order.id}: выставлен счёт № {invoice.number}")
    return done
