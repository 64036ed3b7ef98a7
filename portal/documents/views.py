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
from portal.billing.models import Order
from portal.db import get_db, utcnow
from portal.documents import archive, checkout, listing, service
from portal.documents.archive import Period
from portal.documents.corrections import form_pending_corrections
from portal.documents.forms import RequisitesForm, StatementUploadForm
from portal.documents.invoices import (
    RequisitesMissing,
    TooManyOpenInvoices,
    check_open_invoices,
)
from portal.documents.models import Invoice, Requisites, StoredFile
from portal.documents.requisites import RequisitesInvalid
from portal.documents.store import DocumentCorrupted
from portal.documents.upd import form_pending_upds
from portal.money import format_rub
from portal.nav import register_nav
from portal.pagination import keys_from_args
from portal.payments import statement_lines
from portal.statement_upload import accept_statement
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
    back = url_for("billing.checkout", plan=order.plan_code, months=order.months)
    try:
        done = checkout.checkout_by_invoice(db, order, actor=actor, now=utcnow(), config=current_app.config)
    except TooManyOpenInvoices as exc:
        flash(str(exc), "error")
        return back
    if done.requisites_missing:
        flash(f"{RequisitesMissing()} После сохранения вы вернётесь к оформлению заказа.", "info")
        return url_for("documents.requisites_edit", next=back)
    if done.invoice is None:
        flash(f"Заказ оплачен с баланса: {format_rub(order.amount)}. Счёт не нужен.", "success")
        return url_for("index")
    flash(f"Счёт № {done.invoice.number} выставлен. Его можно скачать или оплатить по QR-коду.", "success")
    return url_for("documents.invoice_view", invoice_id=done.invoice.id)


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
    """`billing tick`: the invoices of smaller plans scheduled unpaid whose payment the tick has just opened."""
    return checkout.issue_scheduled_invoices(db, now=now, config=current_app.config)


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
            data = {name: form[name].data for name in Requisites.FIELDS}
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


def _document_filter() -> tuple[Period | None, str]:
    """The documents page's period and kind from the query string; 400 saying which is wrong."""
    period_code = request.args.get("period", "")
    period = archive.parse_period(period_code) if period_code else None
    if period_code and period is None:
        abort(400, "Период указан неверно: нужен месяц (2026-11), квартал (2026-Q4) или год (2026).")
    kind = request.args.get("kind", "")
    if kind not in {k for k, _ in KIND_CHOICES}:
        abort(400, "Вид документа указан неверно.")
    return period, kind


@bp.route("/documents")
@roles_required(*ACCOUNTING)
def document_list() -> Any:
    db = get_db()
    account = require_account()
    period, kind = _document_filter()
    after, before = keys_from_args(request.args, listing.DOCUMENT_KEY_TYPES)
    context = listing.documents_page(
        db, account.id, period=period, kind=kind, limit=PAGE_SIZE, after=after, before=before, today=msk_date(utcnow())
    )
    return render_template(
        "documents/document_list.html",
        period=period,
        periods=archive.periods_with_documents(db, account.id),
        kind=kind,
        kind_choices=KIND_CHOICES,
        **context,
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


def attachment(data: bytes, mimetype: str, name: str) -> FlaskResponse:
    """A file made for this request (an archive, an акт сверки): downloaded as `name` and never cached."""
    resp = FlaskResponse(data, mimetype=mimetype)
    resp.headers["Content-Disposition"] = content_disposition(name)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


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


def _own_invoice(invoice_id: int) -> tuple[Session, Invoice]:
    """An invoice of the signed-in person's account; any other is not found."""
    db = get_db()
    invoice = service.get_invoice(db, require_account().id, invoice_id)
    if invoice is None:
        abort(404)
    return db, invoice


@bp.route("/documents/invoices/<int:invoice_id>/pdf")
@roles_required(*ACCOUNTING)
def invoice_download(invoice_id: int) -> Any:
    db, invoice = _own_invoice(invoice_id)
    return _send(service.get_file(db, invoice.account_id, invoice.pdf_file_id))


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
    period = archive.parse_period(request.args.get("period"))
    if period is None or period.kind not in ("month", "quarter"):
        abort(400, "Архив собирается за месяц или квартал: выберите период на странице «Документы».")
    try:
        data, count = archive.build_archive(db, account.id, period)
    except DocumentCorrupted:
        log.exception("archive of account %s for %s failed", account.id, period.code)
        abort(500)
    if not count:
        flash(f"За {period.title} документов нет.", "info")
        return redirect(url_for("documents.document_list", period=period.code))
    return attachment(data, "application/zip", f"Документы за {period.title}.zip")


@bp.route("/documents/invoices/<int:invoice_id>")
@roles_required(*ACCOUNTING)
def invoice_view(invoice_id: int) -> Any:
    db, invoice = _own_invoice(invoice_id)
    if invoice.by_card:
        # A company card order's record is no bill to pay (no PDF, no QR): its documents are the УПД and УКД.
        return redirect(url_for("documents.document_list"))
    context = listing.invoice_page(db, invoice, today=msk_date(utcnow()), config=current_app.config)
    return render_template("documents/invoice_view.html", **context)


# --- bank statements (support staff) ----------------------------------------------------------------


@bp.route("/documents/statements/import", methods=["GET", "POST"])
@staff_required
def statement_import() -> Any:
    db = get_db()
    form = StatementUploadForm()
    if form.validate_on_submit():
        run = accept_statement(db, form.statement, actor=_actor())
        if run is not None:
            return redirect(url_for("support.statement_list", run=run.id))
    status = 400 if request.method == "POST" else 200
    unmatched = statement_lines.list_unmatched_lines(db)
    return render_template("documents/statement_import.html", form=form, result=None, unmatched=unmatched), status
