"""Reads for the documents pages: an account's invoices, УПД, advance invoices and УКД as one list, and an invoice."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.billing.models import Order
from portal.documents import edo
from portal.documents.invoices import png_data_uri, qr_payload_for
from portal.documents.models import AdvanceInvoice, Invoice, InvoiceStatus, Ukd, Upd
from portal.documents.seller import get_seller
from portal.documents.service import get_requisites, get_upd_for_invoice
from portal.pagination import page_from
from portal.payments import ledger


@dataclass(frozen=True)
class DocumentRow:
    """One line of the documents page: an invoice or a УПД."""

    kind: str  # "invoice" | "upd"
    id: int
    number: str
    date: date
    amount: int
    status: str
    status_title: str
    pdf_file_id: int | None
    xml_file_id: int | None
    invoice_id: int
    invoice_number: str
    by_card: bool = False  # paid by a company's card: no bill to show, the УПД names the card payment

    @property
    def title(self) -> str:
        return DOCUMENT_TITLES[self.kind]


DOCUMENT_TITLES = {
    "invoice": "Счёт на оплату",
    "upd": "УПД",
    "advance": "Счёт-фактура на аванс",
    "ukd": "УКД (корректировка)",
}
ARCHIVE_FOLDERS = {
    "invoice": "Счета на оплату",
    "upd": "УПД",
    "advance": "Счета-фактуры на аванс",
    "ukd": "УКД",
}


# A day's documents: the invoice last (what it led to above it), then by kind and id, newest first. With the date and
# the id this is a unique key each kind's (account_id, date, id) index walks from (keyset pagination).
KIND_RANK = {"invoice": 0, "upd": 1, "advance": 2, "ukd": 3}
DOCUMENT_KEY_TYPES = (date, int, int)


def document_key(row: DocumentRow) -> tuple[date, int, int]:
    return (row.date, KIND_RANK[row.kind], row.id)


def _keyset_condition(
    day: Any, row_id: Any, rank: int, after: tuple[Any, ...] | None, before: tuple[Any, ...] | None
) -> Any:
    """This kind's rows after (before) a key (date, rank, id) in the newest-first order, as one index range."""
    if after is not None:
        d, r, i = after
        if rank < r:
            return day <= d
        if rank > r:
            return day < d
        return sa.tuple_(day, row_id) < sa.tuple_(d, i)
    if before is not None:
        d, r, i = before
        if rank > r:
            return day >= d
        if rank < r:
            return day > d
        return sa.tuple_(day, row_id) > sa.tuple_(d, i)
    return None


def list_documents(
    db: Session,
    account_id: int,
    *,
    start: date | None = None,
    end: date | None = None,
    kind: str | None = None,
    limit: int | None = None,
    after: tuple[Any, ...] | None = None,
    before: tuple[Any, ...] | None = None,
) -> list[DocumentRow]:
    """Invoices and УПД of an account dated in [start, end), newest first.

    With a limit: at most limit + 1 rows after (or, read backwards and returned in that order, before) a key —
    each kind's query walks its (account_id, date, id) index from the key and stops, whatever the account's size.
    """
    rows: list[DocumentRow] = []
    backwards = before is not None and after is None

    def page_of(q: Any, day: Any, row_id: Any, rank: int) -> Any:
        if limit is None:
            return q
        condition = _keyset_condition(day, row_id, rank, after, None if after is not None else before)
        if condition is not None:
            q = q.where(condition)
        order = (day.asc(), row_id.asc()) if backwards else (day.desc(), row_id.desc())
        return q.order_by(*order).limit(limit + 1)

    if kind in (None, "invoice"):
        # A card order's record is no bill anyone pays: its УПД is the document.
        q = sa.select(Invoice).where(Invoice.account_id == account_id, Invoice.paid_by.is_(None))
        if start is not None:
            q = q.where(Invoice.issued_on >= start)
        if end is not None:
            q = q.where(Invoice.issued_on < end)
        for inv in db.scalars(page_of(q, Invoice.issued_on, Invoice.id, KIND_RANK["invoice"])):
            rows.append(
                DocumentRow(
                    "invoice",
                    inv.id,
                    inv.number,
                    inv.issued_on,
                    inv.amount,
                    inv.status,
                    inv.status_title,
                    inv.pdf_file_id,
                    None,
                    inv.id,
                    inv.number,
                )
            )
    if kind in (None, "upd"):
        q2 = (
            sa.select(Upd, Invoice.number, Invoice.paid_by)
            .join(Invoice, Invoice.id == Upd.invoice_id)
            .where(Upd.account_id == account_id)
        )
        if start is not None:
            q2 = q2.where(Upd.doc_date >= start)
        if end is not None:
            q2 = q2.where(Upd.doc_date < end)
        for upd, invoice_number, paid_by in db.execute(page_of(q2, Upd.doc_date, Upd.id, KIND_RANK["upd"])):
            rows.append(
                DocumentRow(
                    "upd",
                    upd.id,
                    upd.number,
                    upd.doc_date,
                    upd.amount,
                    upd.status,
                    upd.status_title,
                    upd.pdf_file_id,
                    upd.xml_file_id,
                    upd.invoice_id,
                    invoice_number,
                    by_card=paid_by == "card",
                )
            )
    for kind_code, model in (("advance", AdvanceInvoice), ("ukd", Ukd)):
        if kind not in (None, kind_code):
            continue
        invoice_of = Invoice.id == (model.invoice_id if model is AdvanceInvoice else Upd.invoice_id)
        q3 = sa.select(model, Invoice.id, Invoice.number, Invoice.paid_by)
        if model is Ukd:
            q3 = q3.join(Upd, Upd.id == Ukd.upd_id)
        q3 = q3.join(Invoice, invoice_of).where(model.account_id == account_id)
        if start is not None:
            q3 = q3.where(model.doc_date >= start)
        if end is not None:
            q3 = q3.where(model.doc_date < end)
        for doc, invoice_id, invoice_number, paid_by in db.execute(
            page_of(q3, model.doc_date, model.id, KIND_RANK[kind_code])
        ):
            amount = doc.amount if model is AdvanceInvoice else -doc.decrease
            rows.append(
                DocumentRow(
                    kind_code,
                    doc.id,
                    doc.number,
                    doc.doc_date,
                    amount,
                    doc.status,
                    doc.status_title,
                    doc.pdf_file_id,
                    doc.xml_file_id,
                    invoice_id,
                    invoice_number,
                    by_card=paid_by == "card",
                )
            )
    if limit is None:
        rows.sort(key=lambda r: (r.date, r.kind != "invoice", r.number), reverse=True)
        return rows
    rows.sort(key=document_key, reverse=not backwards)
    return rows[: limit + 1]


def documents_page(
    db: Session,
    account_id: int,
    *,
    period: Any | None,
    kind: str,
    limit: int,
    after: tuple[Any, ...] | None,
    before: tuple[Any, ...] | None,
    today: date,
) -> dict[str, Any]:
    """What the documents page shows: one page of documents (in `period`, of `kind`, "" for all; one query per kind
    whatever the account's size), the company's requisites, the ЭДО state of its УПД and УКД, and the quarter so far
    for the reconciliation act's form."""
    if after is not None:
        before = None
    start, end = (period.start, period.end) if period else (None, None)
    rows = list_documents(
        db, account_id, start=start, end=end, kind=kind or None, limit=limit, after=after, before=before
    )
    if before is not None:
        rows.reverse()  # read backwards from the key, shown newest first
    page = page_from(rows, document_key, limit=limit, after=after, before=before)
    return {
        "rows": page.rows,
        "page": page,
        "requisites": get_requisites(db, account_id),
        "edo_rows": edo.statuses_for(db, account_id, [row.id for row in page.rows if row.kind in ("upd", "ukd")]),
        "act_start": today.replace(month=(today.month - 1) // 3 * 3 + 1, day=1),
        "act_end": today,
    }


def invoice_page(db: Session, invoice: Invoice, *, today: date, config: Mapping[str, Any]) -> dict[str, Any]:
    """What an invoice's page shows: its state, what is paid and left, and the QR code while it can be paid."""
    paid = ledger.invoice_paid_amount(db, invoice.id)
    remaining = ledger.invoice_remaining(db, invoice)
    payload = invoice.qr_payload
    if invoice.is_open and paid:
        # A part is paid: the QR asks for the rest, with the invoice's own purpose.
        payload = qr_payload_for(get_seller(config), remaining, invoice.purpose)
    return {
        "invoice": invoice,
        "overdue": invoice.status == InvoiceStatus.ISSUED and invoice.valid_until < today,
        "upd": get_upd_for_invoice(db, invoice.id),
        "order": db.get(Order, invoice.order_id),
        "seller": get_seller(config),
        "paid": paid,
        "remaining": remaining,
        "qr_data_uri": png_data_uri(payload, scale=5) if invoice.is_open else None,
    }
