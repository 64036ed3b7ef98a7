"""Documents services: requisites, the one path by which an invoice gets paid (import, support), and reads for pages.

Support's console calls `mark_invoice_paid`, `cancel_invoice`, `link_statement_line`, `dismiss_statement_line`
and `list_unmatched_lines`. The writing ones commit: a payment is committed first and the УПД formed right after
it, so a failure to render can never undo a payment (a pending УПД is formed by the `billing tick` hook later).
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_request_context
from sqlalchemy.orm import Session

from portal.audit import record_audit
from portal.billing import service as billing
from portal.billing.models import Order, OrderStatus
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
from portal.pagination import KeysetPage, page_from
from portal.tasks import enqueue
from portal.timeutil import MSK, format_month_ru, msk_date

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
    changed = {k for k in after if before is None or before.get(k) != after[k]}
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
        billing.cancel_order(db, order.id, actor=actor, reason=reason, now=now)
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


@order_closed.connect
def _on_order_closed(order: Order, *, db: Session, reason: str, now: datetime, **_: Any) -> None:
    invoice = db.scalars(
        sa.select(Invoice)
        .where(Invoice.order_id == order.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if invoice is not None:
        annul_invoice(db, invoice, actor=None, reason=reason, now=now)


@scheduled_period_canceled.connect
def _on_scheduled_period_canceled(order: Order, *, db: Session, reason: str, now: datetime, **_: Any) -> None:
    """Rights paid in advance that will never begin: the УПД due on their first day is not formed."""
    invoice = db.scalars(
        sa.select(Invoice)
        .where(Invoice.order_id == order.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
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


def list_documents_page(
    db: Session,
    account_id: int,
    *,
    start: date | None = None,
    end: date | None = None,
    kind: str | None = None,
    limit: int = 50,
    after: tuple[Any, ...] | None = None,
    before: tuple[Any, ...] | None = None,
) -> KeysetPage[DocumentRow]:
    """One page of the documents list, newest first: one query per kind whatever the account's size."""
    if after is not None:
        before = None
    rows = list_documents(db, account_id, start=start, end=end, kind=kind, limit=limit, after=after, before=before)
    if before is not None:
        rows.reverse()
    return page_from(rows, document_key, limit=limit, after=after, before=before)


def get_file(db: Session, account_id: int, file_id: int | None) -> StoredFile | None:
    if file_id is None:
        return None
    return db.scalars(
        sa.select(StoredFile).where(StoredFile.id == file_id, StoredFile.account_id == account_id)
    ).first()


def read_file(stored: StoredFile, config: Mapping[str, Any] | None = None) -> bytes:
    """The document's bytes, exactly as issued (the store checks them against the recorded SHA-256)."""
    return get_store(_config(config)).read(stored.path, stored.sha256)


# --- periods and the ZIP of a period ----------------------------------------------------------------

_PERIOD = re.compile(r"(?P<year>20[0-9]{2})(?:-(?:(?P<month>0[1-9]|1[0-2])|Q(?P<quarter>[1-4])))?")


@dataclass(frozen=True)
class Period:
    code: str  # "2026-11", "2026-Q4", "2026"
    kind: str  # "month" | "quarter" | "year"
    start: date
    end: date  # exclusive
    title: str  # «ноябрь 2026», «4 квартал 2026», «2026 год»


def _month_start(year: int, month: int) -> date:
    return date(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def parse_period(code: str | None) -> Period | None:
    """A month «2026-11», a quarter «2026-Q4» or a year «2026»; None for anything else."""
    match = _PERIOD.fullmatch((code or "").strip())
    if match is None:
        return None
    year = int(match["year"])
    if match["month"]:
        month = int(match["month"])
        return Period(
            f"{year}-{month:02d}",
            "month",
            date(year, month, 1),
            _month_start(year, month + 1),
            format_month_ru(date(year, month, 1)),
        )
    if match["quarter"]:
        quarter = int(match["quarter"])
        first = 3 * quarter - 2
        return Period(
            f"{year}-Q{quarter}",
            "quarter",
            date(year, first, 1),
            _month_start(year, first + 3),
            f"{quarter} квартал {year}",
        )
    return Period(str(year), "year", date(year, 1, 1), date(year + 1, 1, 1), f"{year} год")


def periods_with_documents(db: Session, account_id: int) -> list[Period]:
    """The months, quarters and years in which the account has documents, newest first, for the filter."""
    # Distinct days, read from each kind's (account_id, date, id) index: a few hundred a year, not one per document.
    days: set[date] = set()
    for day, owner in (
        (Invoice.issued_on, Invoice.account_id),
        (Upd.doc_date, Upd.account_id),
        (Ukd.doc_date, Ukd.account_id),
        (AdvanceInvoice.doc_date, AdvanceInvoice.account_id),
    ):
        days |= set(db.scalars(sa.select(day).where(owner == account_id).distinct()))
    codes: dict[str, Period] = {}
    for day in sorted(days, reverse=True):
        for code in (str(day.year), f"{day.year}-Q{(day.month - 1) // 3 + 1}", f"{day.year}-{day.month:02d}"):
            if code not in codes:
                period = parse_period(code)
                assert period is not None
                codes[code] = period
    order = {"year": 0, "quarter": 1, "month": 2}
    return sorted(codes.values(), key=lambda p: (p.start.year, order[p.kind], p.start), reverse=True)


def build_archive(
    db: Session, account_id: int, period: Period, config: Mapping[str, Any] | None = None
) -> tuple[bytes, int]:
    """A ZIP (built in memory) of every invoice and УПД (PDF and XML) dated in the period; (bytes, files)."""
    cfg = _config(config)
    buffer = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for row in sorted(list_documents(db, account_id, start=period.start, end=period.end), key=lambda r: r.date):
            folder = ARCHIVE_FOLDERS[row.kind]
            for file_id in (row.pdf_file_id, row.xml_file_id):
                stored = get_file(db, account_id, file_id)
                if stored is None:
                    continue
                info = zipfile.ZipInfo(f"{folder}/{stored.download_name}", date_time=_zip_time(stored.created_at))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, read_file(stored, cfg))
                count += 1
    return buffer.getvalue(), count


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    local = moment.astimezone(MSK)
    return (local.year, local.month, local.day, local.hour, local.minute, local.second)
