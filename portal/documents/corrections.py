"""Documents after the УПД: the advance invoice (счёт-фактура на аванс) and the УКД after a refund of documented
rights. Numbered in the transaction that makes them necessary, rendered after it (or by the retry), as the УПД is."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit import record_audit
from portal.billing.models import Order
from portal.billing.pricing import round_half_up_div
from portal.documents import numbering, render, ukd_xml, upd_xml
from portal.documents.invoices import vat_of
from portal.documents.models import AdvanceInvoice, Invoice, Ukd, Upd
from portal.documents.seller import get_seller
from portal.documents.upd import form_numbered, form_pending, parties, record_numbered, thaw
from portal.timeutil import msk_date

# The tax code's five days for an advance invoice (п. 3 ст. 168 НК РФ): rights that begin within them need none.
ADVANCE_DAYS = 5


# --- the advance invoice ------------------------------------------------------------------------------------------


def needs_advance_invoice(invoice: Invoice, order: Order, paid_on: date) -> bool:
    """With VAT charged, money for rights that begin more than five days after it arrived is an advance."""
    return invoice.vat_rate is not None and invoice.vat_rate > 0 and order.starts_on > paid_on + timedelta(ADVANCE_DAYS)


def number_advance_invoice(
    db: Session,
    invoice: Invoice,
    order: Order,
    *,
    payment_doc: Mapping[str, Any],
    now: datetime,
    config: Mapping[str, Any],
    actor: Any | None = None,
) -> AdvanceInvoice:
    """Number the advance invoice in the payment's transaction; dated the day it is made (within the five days
    when the money is recorded on time), so its numbers follow its dates."""
    existing = db.scalars(sa.select(AdvanceInvoice).where(AdvanceInvoice.invoice_id == invoice.id)).first()
    if existing is not None:
        return existing
    assert invoice.vat_rate
    taken = numbering.take_number(db, numbering.ADVANCE, msk_date(now), prefix="А-")
    total = order.amount
    vat = vat_of(total, invoice.vat_rate)
    ctx = {
        "number": taken.text,
        "date": taken.day,
        **parties(get_seller(config), invoice.buyer),
        "payment_docs": [dict(payment_doc)],
        "lines": [
            {
                "name": f"Предварительная оплата: {invoice.line_name}",
                "rate_text": upd_xml.advance_rate(invoice.vat_rate),
                "vat_amount": vat,
                "amount": total,
            }
        ],
        "total": total,
        "vat": {"exempt": False, "rate": invoice.vat_rate, "amount": vat},
        "created_at": now,
    }
    row = AdvanceInvoice(
        account_id=invoice.account_id, invoice_id=invoice.id, amount=total, vat_rate=invoice.vat_rate, vat_amount=vat
    )
    record_numbered(db, row, taken, ctx, now=now)
    record_audit(
        db,
        actor=actor,
        account=invoice.account_id,
        action="documents.advance_invoice_numbered",
        before={"invoice": invoice.number},
        after={"advance_invoice": taken.text, "date": taken.day.isoformat(), "amount": total, "vat": vat},
    )
    return row


def advance_invoices_for(db: Session, invoice_id: int) -> list[dict[str, Any]]:
    """Line 5б of the invoice's УПД: the advance invoices issued for its money."""
    rows = db.scalars(sa.select(AdvanceInvoice).where(AdvanceInvoice.invoice_id == invoice_id)).all()
    return [{"number": r.number, "date": r.doc_date} for r in rows]


# form(db, row, *, now, config): each is rendered and stored as the УПД is, to its own folder and file names.
form_advance_invoice = partial(
    form_numbered,
    kind="advance",
    title="Счёт-фактура на аванс",
    render_pdf=render.render_advance_pdf,
    build_xml=upd_xml.build_advance_xml,
)


# --- the УКД ------------------------------------------------------------------------------------------------------


def corrected_amount(db: Session, upd: Upd) -> int:
    """The УПД's cost after the УКД already made for it (each correction starts from the last one's «после»)."""
    last = db.scalar(sa.select(sa.func.min(Ukd.amount_after)).where(Ukd.upd_id == upd.id))
    return upd.amount if last is None else int(last)


def _part(total: int, rate: int | None, quantity: int) -> dict[str, int]:
    vat = vat_of(total, rate) if rate is not None else 0
    return {
        "price": round_half_up_div(total - vat, quantity),
        "amount_without_vat": total - vat,
        "vat_amount": vat,
        "amount": total,
    }


def number_ukd(
    db: Session,
    upd: Upd,
    order: Order,
    *,
    decrease: int,
    cut_on: date,
    reason: str,
    now: datetime,
    config: Mapping[str, Any],
    actor: Any | None = None,
) -> Ukd:
    """Number the УКД that lowers the УПД's cost by `decrease` kopecks (a refund of rights it documented)."""
    before_total = corrected_amount(db, upd)
    if not 0 < decrease <= before_total:
        raise ValueError(f"УКД: уменьшение {decrease} вне стоимости УПД {before_total}")
    after_total = before_total - decrease
    upd_ctx = thaw(upd.context)
    line = upd_ctx["lines"][0]
    quantity = int(line["quantity"])
    before, after = _part(before_total, upd.vat_rate, quantity), _part(after_total, upd.vat_rate, quantity)
    change = {k: before[k] - after[k] for k in ("amount_without_vat", "vat_amount", "amount")}
    doc_date = msk_date(now)
    taken = numbering.take_number(db, numbering.UKD, doc_date, prefix="К-")
    buyer = dict(upd_ctx["buyer"])
    invoice = db.get(Invoice, upd.invoice_id)
    if invoice is not None:
        buyer["edo_id"] = invoice.buyer.get("edo_id")
    ctx = {
        "number": taken.text,
        "date": doc_date,
        "upd": {"number": upd.number, "date": upd.doc_date},
        **parties(get_seller(config), buyer),
        "lines": [
            {
                "name": line["name"],
                "unit_code": line["unit_code"],
                "unit": line["unit"],
                "quantity": quantity,
                "before": before,
                "after": after,
                "decrease": change,
            }
        ],
        "total_decrease": change,
        "vat": {"exempt": upd.vat_rate is None, "rate": upd.vat_rate, "amount": change["vat_amount"]},
        "basis": {
            "name": "Соглашение о досрочном прекращении прав по заказу",
            "number": str(order.id),
            "date": doc_date,
        },
        "notice_date": doc_date,
        "other_info": f"Права прекращены с {cut_on:%d.%m.%Y}. {reason}".strip(),
        "created_at": now,
    }
    row = Ukd(
        account_id=upd.account_id,
        upd_id=upd.id,
        order_id=order.id,
        amount_before=before_total,
        amount_after=after_total,
        vat_rate=upd.vat_rate,
    )
    record_numbered(db, row, taken, ctx, now=now)
    record_audit(
        db,
        actor=actor,
        account=upd.account_id,
        action="documents.ukd_numbered",
        before={"upd": upd.number, "amount": before_total},
        after={"ukd": taken.text, "amount": after_total, "decrease": decrease},
        reason=reason or None,
    )
    return row


form_ukd = partial(
    form_numbered, kind="ukd", title="УКД", render_pdf=render.render_ukd_pdf, build_xml=ukd_xml.build_ukd_xml
)


def form_pending_corrections(db: Session, *, now: datetime, config: Mapping[str, Any], limit: int = 50) -> list[str]:
    """Render the advance invoices and УКД still pending; the tick and the paths that number them call it."""
    return form_pending(
        db, AdvanceInvoice, form_advance_invoice, "Счёт-фактура на аванс", now=now, config=config, limit=limit
    ) + form_pending(db, Ukd, form_ukd, "УКД", now=now, config=config, limit=limit)
