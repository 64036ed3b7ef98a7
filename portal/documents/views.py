"""Documents pages: requisites, the list of invoices and УПД with downloads and ZIPs, the invoice page, statement upload."""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any
from urllib.parse import quote, urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask import Response as FlaskResponse
from flask_login import current_user
from sqlalchemy.orm import Session

from portal.accounts.access import require_account, roles_required, staff_required
from portal.billing import service as billing
from portal.billing.models import Order
from portal.db import get_db, utcnow
from portal.documents import edo, service
from portal.documents.corrections import form_pending_corrections
from portal.documents.forms import RequisitesForm, StatementUploadForm
from portal.documents.invoices import (
    RequisitesMissing,
    TooManyOpenInvoices,
    check_open_invoices,
    issue_invoice,
    png_data_uri,
    qr_payload_for,
)
from portal.documents.models import InvoiceStatus, StoredFile
from portal.documents.requisites import FIELDS as REQUISITES_FIELDS
from portal.documents.requisites import RequisitesInvalid
from portal.documents.seller import get_seller
from portal.documents.store import DocumentCorrupted
from portal.documents.upd import form_pending_upds
from portal.money import format_rub
from portal.nav import register_nav
from portal.pagination import keys_from_args
from portal.payments import bank, ledger
from portal.payments.statement import StatementError
from portal.payments.tasks import start_statement_import
from portal.timeutil import msk_date

log = logging.getLogger(__name__)

bp = Blueprint("documents", __name__)

ACCOUNTING = ("owner", "accountant")
PAGE_SIZE = 50  # documents per page of /documents
register_nav("documents.requisites_edit", "Реквизиты", ACCOUNTING, order=38)
register_nav("documents.document_list", "Документы", ACCOUNTING, order=40)
register_nav("documents.statement_import", "Выписки", ("staff",), order=95)


def _actor() -> Any:
    return current_user._get_current_object()  # type: ignore[attr-defined]


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths, so that `next` cannot send anyone elsewhere."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


# --- the checkout's legal-entity choice and the retry of УПД -------------------------------------------


def invoice_checkout(db: Session, order: Order, actor: Any) -> str:
    """Billing's «invoice» handler: issue the invoice for the order, or send the payer to fill in requisites first."""

    now = utcnow()
    if service.get_requisites(db, order.account_id) is None:
        # The checkout makes a new order when the payer comes back; this one would only linger as «pending».
        billing.cancel_order(db, order.id, actor=actor, reason="Счёт не выставлен: не указаны реквизиты", now=now)
        flash(f"{RequisitesMissing()} После сохранения вы вернётесь к оформлению заказа.", "info")
        back = url_for("billing.checkout", plan=order.plan_code, months=order.months)
        return url_for("documents.requisites_edit", next=back)
    if ledger.settle_from_balance(db, order, now=now, config=current_app.config, actor=actor):
        db.commit()
        flash(f"Заказ оплачен с баланса: {format_rub(order.amount)}. Счёт не нужен.", "success")
        return url_for("index")
    try:
        invoice = issue_invoice(db, order, actor=actor, now=now, config=current_app.config)
    except TooManyOpenInvoices as exc:
        # Reached between the precheck and here (another tab, another accountant): the order is not left pending.
        db.rollback()
        billing.cancel_order(db, order.id, actor=actor, reason="Счёт не выставлен: много неоплаченных счетов", now=now)
        db.commit()
        flash(str(exc), "error")
        return url_for("billing.checkout", plan=order.plan_code, months=order.months)
    db.commit()
    flash(f"Счёт № {invoice.number} выставлен. Его можно скачать или оплатить по QR-коду.", "success")
    return url_for("documents.invoice_view", invoice_id=invoice.id)


def invoice_precheck(db: Session, account_id: int) -> str | None:
    """Billing asks before creating the order: with MAX_OPEN_INVOICES unpaid invoices nothing is created at all."""
    try:
        check_open_invoices(db, account_id, current_app.config)
    except TooManyOpenInvoices as exc:
        return str(exc)
    return None


def upd_tick_hook(db: Session, now: Any) -> list[str]:
    """`billing tick`: number the УПД of rights that begin today, then form every УПД still pending."""
    numbered = service.number_due_upds(db, now=now, config=current_app.config)
    db.commit()
    formed = form_pending_upds(db, now=now, config=current_app.config)
    return numbered + formed + form_pending_corrections(db, now=now, config=current_app.config)


def scheduled_invoices_tick_hook(db: Session, now: Any) -> list[str]:
    """`billing tick`: a smaller plan scheduled unpaid, whose payment the tick has just opened, gets its invoice
    (the balance pays first, as at checkout). Once only: an order with an invoice, or paid, is not picked again;
    without requisites or with too many open invoices it stays pending and the dashboard and notices say so."""
    import sqlalchemy as sa

    from portal.billing.models import OrderStatus
    from portal.documents.models import Invoice

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
        if ledger.settle_from_balance(db, order, now=now, config=current_app.config, actor=None):
            db.commit()
            done.append(f"заказ № {order.id} оплачен с баланса компании")
            continue
        try:
            invoice = issue_invoice(db, order, actor=None, now=now, config=current_app.config)
        except (RequisitesMissing, TooManyOpenInvoices) as exc:
            db.rollback()
            done.append(f"заказ № {order.id}: счёт не выставлен ({exc})")
            continue
        db.commit()
        done.append(f"заказ № {order.id}: выставлен счёт № {invoice.number}")
    return done


INVOICE_TITLE = "Юридическое лицо или ИП: счёт на оплату"


# --- requisites -------------------------------------------------------------------------------------


@bp.route("/requisites", methods=["GET", "POST"])
@roles_required(*ACCOUNTING)
def requisites_edit() -> Any:
    db = get_db()
    account = require_account()
    current = service.get_requisites(db, account.id)
    next_url = _safe_next(request.values.get("next"))
    form = RequisitesForm(data=current.as_dict() if current is not None and request.method == "GET" else None)
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            data = {name: form[name].data for name in REQUISITES_FIELDS}
            try:
                service.save_requisites(db, actor=_actor(), account_id=account.id, data=data, now=utcnow())
                db.commit()
            except RequisitesInvalid as exc:
                db.rollback()
                for name, message in exc.errors.items():
                    form[name].errors = [message]
            else:
                flash("Реквизиты сохранены: они будут в новых счетах и УПД.", "success")
                return redirect(next_url or url_for("documents.requisites_edit"))
        status = 400
    return render_template("documents/requisites_edit.html", form=form, requisites=current, next_url=next_url), status


# --- the documents page -----------------------------------------------------------------------------


KIND_CHOICES = (
    ("", "Все документы"),
    ("invoice", "Счета на оплату"),
    ("upd", "УПД"),
    ("advance", "Счета-фактуры на аванс"),
    ("ukd", "УКД"),
)


@bp.route("/documents")
@roles_required(*ACCOUNTING)
def document_list() -> Any:
    db = get_db()
    account = require_account()
    period_code = request.args.get("period", "")
    period = service.parse_period(period_code) if period_code else None
    if period_code and period is None:
        abort(400, "Период указан неверно: нужен месяц (2026-11), квартал (2026-Q4) или год (2026).")
    kind = request.args.get("kind", "")
    if kind not in {k for k, _ in KIND_CHOICES}:
        abort(400, "Вид документа указан неверно.")
    after, before = keys_from_args(request.args, service.DOCUMENT_KEY_TYPES)
    page = service.list_documents_page(
        db,
        account.id,
        start=period.start if period else None,
        end=period.end if period else None,
        kind=kind or None,
        limit=PAGE_SIZE,
        after=after,
        before=before,
    )
    return render_template(
        "documents/document_list.html",
        rows=page.rows,
        page=page,
        period=period,
        periods=service.periods_with_documents(db, account.id),
        kind=kind,
        kind_choices=KIND_CHOICES,
        requisites=service.get_requisites(db, account.id),
        edo_rows=edo.statuses_for(db, account.id, [row.id for row in page.rows if row.kind in ("upd", "ukd")]),
        act_start=msk_date(utcnow()).replace(month=(msk_date(utcnow()).month - 1) // 3 * 3 + 1, day=1),
        act_end=msk_date(utcnow()),
    )


def _ascii_fallback(name: str) -> str:
    table = str.maketrans(
        {
            "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z", "и": "i",
            "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t",
            "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "sch", "ъ": "", "ы": "y",
            "ь": "", "э": "e", "ю": "yu", "я": "ya", "№": "N",
        }
    )  # fmt: skip
    out = []
    for ch in name:
        lower = ch.lower()
        t = lower.translate(table)
        out.append(t.capitalize() if ch != lower and t else t)
    text = unicodedata.normalize("NFKD", "".join(out)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    return text or "document"


def content_disposition(name: str) -> str:
    """`attachment` with the Russian name in RFC 5987 `filename*` and a transliterated `filename` for old clients."""
    return f"attachment; filename=\"{_ascii_fallback(name)}\"; filename*=UTF-8''{quote(name, safe='')}"


def _send(stored: StoredFile | None) -> Any:
    if stored is None:
        abort(404)
    try:
        data = service.read_file(stored)
    except DocumentCorrupted:
        log.exception("stored document %s failed its check", stored.id)
        abort(500)
    resp = FlaskResponse(data, mimetype=stored.content_type)
    resp.headers["Content-Disposition"] = content_disposition(stored.download_name)
    resp.headers["Cache-Control"] = "private, no-cache"
    resp.set_etag(stored.sha256)
    return resp


@bp.route("/documents/invoices/<int:invoice_id>/pdf")
@roles_required(*ACCOUNTING)
def invoice_download(invoice_id: int) -> Any:
    db = get_db()
    account = require_account()
    invoice = service.get_invoice(db, account.id, invoice_id)
    if invoice is None:
        abort(404)
    return _send(service.get_file(db, account.id, invoice.pdf_file_id))


@bp.route("/documents/upd/<int:upd_id>/<any(pdf, xml):fmt>")
@roles_required(*ACCOUNTING)
def upd_download(upd_id: int, fmt: str) -> Any:
    db = get_db()
    account = require_account()
    upd = service.get_upd(db, account.id, upd_id)
    if upd is None:
        abort(404)
    return _send(service.get_file(db, account.id, upd.pdf_file_id if fmt == "pdf" else upd.xml_file_id))


@bp.route("/documents/<any(advance, ukd):doc_kind>/<int:doc_id>/<any(pdf, xml):fmt>")
@roles_required(*ACCOUNTING)
def correction_download(doc_kind: str, doc_id: int, fmt: str) -> Any:
    db = get_db()
    account = require_account()
    doc = service.get_correction(db, account.id, doc_kind, doc_id)
    if doc is None:
        abort(404)
    return _send(service.get_file(db, account.id, doc.pdf_file_id if fmt == "pdf" else doc.xml_file_id))


@bp.route("/documents/archive")
@roles_required(*ACCOUNTING)
def archive_download() -> Any:
    db = get_db()
    account = require_account()
    period = service.parse_period(request.args.get("period"))
    if period is None or period.kind not in ("month", "quarter"):
        abort(400, "Архив собирается за месяц или квартал: выберите период на странице «Документы».")
    try:
        data, count = service.build_archive(db, account.id, period)
    except DocumentCorrupted:
        log.exception("archive of account %s for %s failed", account.id, period.code)
        abort(500)
    if not count:
        flash(f"За {period.title} документов нет.", "info")
        return redirect(url_for("documents.document_list", period=period.code))
    resp = FlaskResponse(data, mimetype="application/zip")
    resp.headers["Content-Disposition"] = content_disposition(f"Документы за {period.title}.zip")
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


@bp.route("/documents/invoices/<int:invoice_id>")
@roles_required(*ACCOUNTING)
def invoice_view(invoice_id: int) -> Any:
    db = get_db()
    account = require_account()
    invoice = service.get_invoice(db, account.id, invoice_id)
    if invoice is None:
        abort(404)
    if invoice.by_card:
        # A company card order's record is no bill to pay (no PDF, no QR): its documents are the УПД and УКД.
        return redirect(url_for("documents.document_list"))
    overdue = invoice.status == InvoiceStatus.ISSUED and invoice.valid_until < msk_date(utcnow())
    paid = ledger.invoice_paid_amount(db, invoice.id)
    remaining = ledger.invoice_remaining(db, invoice)
    payload = invoice.qr_payload
    if invoice.is_open and paid:
        # A part is paid: the QR asks for the rest, with the invoice's own purpose.
        payload = qr_payload_for(get_seller(current_app.config), remaining, invoice.purpose)
    return render_template(
        "documents/invoice_view.html",
        invoice=invoice,
        overdue=overdue,
        upd=service.get_upd_for_invoice(db, invoice.id),
        order=db.get(Order, invoice.order_id),
        seller=get_seller(current_app.config),
        paid=paid,
        remaining=remaining,
        qr_data_uri=png_data_uri(payload, scale=5) if invoice.is_open else None,
    )


# --- bank statements (support staff) ----------------------------------------------------------------


@bp.route("/documents/statements/import", methods=["GET", "POST"])
@staff_required
def statement_import() -> Any:
    db = get_db()
    form = StatementUploadForm()
    result = None
    status = 200
    if form.validate_on_submit():
        upload = form.statement.data
        try:
            # Imported by a task (a large statement takes longer than a page view); the console shows its progress.
            run = start_statement_import(
                db, upload.read(), file_name=upload.filename or "statement.txt", actor=_actor()
            )
        except StatementError as exc:
            db.rollback()
            form.statement.errors = [f"Файл не принят, ничего не загружено. {exc}"]
            status = 400
        else:
            db.commit()
            return redirect(url_for("support.statement_list", run=run.id))
    elif request.method == "POST":
        status = 400
    return render_template(
        "documents/statement_import.html",
        form=form,
        result=result,
        unmatched=bank.list_unmatched_lines(db),
    ), status
