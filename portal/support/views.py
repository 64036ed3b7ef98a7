"""The support console under /support: the queue, account search and page, confirmed actions, statements, audit.

Every view here is staff-only (404 for everyone else). The blueprint has no url_prefix because it also carries the
owners' request page (/support-requests/new, see requests.py), which must not live under the staff-only /support.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask import Response as FlaskResponse
from flask_login import current_user
from wtforms import SelectChoice

from portal.accounts.access import current_membership, staff_required
from portal.accounts.forms import EmptyForm
from portal.billing.catalog import PLANS
from portal.billing.display import format_storage
from portal.db import get_db, utcnow
from portal.documents import service as documents
from portal.documents.invoices import DocumentsError
from portal.documents.models import Invoice, StoredFile
from portal.money import format_amount, format_rub
from portal.nav import register_nav
from portal.pagination import keys_from_args
from portal.payments import ledger, statement_lines
from portal.payments.models import Payment, Receipt, Refund
from portal.payments.providers import get_provider
from portal.payments.providers.base import ProviderError
from portal.payments.refunds import (
    cancel_refund,
    complete_bank_refund,
    list_refunds,
    refund_rights,
    refund_through_provider,
    request_refund,
)
from portal.payments.reports import history
from portal.payments.service import customer_for_account
from portal.payments.statement import StatementError
from portal.payments.tasks import STATEMENT_RUN, start_statement_import
from portal.support import requests as owner_requests
from portal.support import service
from portal.support.amounts import AmountError, parse_rubles
from portal.support.email import get_email_backend
from portal.support.forms import (
    ConfirmedActionForm,
    CreditForm,
    CustomPlanForm,
    DismissForm,
    InvoiceCancelForm,
    InvoicePayForm,
    LinkForm,
    RefundDoneForm,
    RefundStartForm,
    ResendForm,
    ResolveForm,
    RightsRefundForm,
    StatementForm,
    TrialForm,
)
from portal.support.models import RequestKind, RequestStatus
from portal.tasks.runs import get_run as get_task_run
from portal.tasks.runs import run_state
from portal.textinput import quoted
from portal.timeutil import msk_date

log = logging.getLogger(__name__)

bp = Blueprint("support", __name__)
register_nav("support.queue", "Поддержка", ("staff",), order=90)
# The owners' request page is a view of this blueprint too (endpoint support.request_new), outside /support.
owner_requests.register(bp)


def _actor() -> Any:
    return current_user._get_current_object()  # type: ignore[attr-defined]


def _account_or_404(account_id: int) -> Any:
    account = service.get_account(get_db(), account_id)
    if account is None:
        abort(404)
    return account


def _request_arg() -> int | None:
    raw = (request.values.get("request_id") or request.values.get("request") or "").strip()
    # Fewer than 10 digits: a longer number is no row of an INTEGER column and would overflow the driver.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None


@bp.app_template_filter("action_title")
def _action_title(action: str) -> str:
    return service.action_title(action)


@bp.app_template_filter("storage_size")
def _storage_filter(n: int) -> str:
    return format_storage(n)


@bp.app_template_filter("support_plan_title")
def _plan_title_filter(code: str | None) -> str:
    return service.plan_title(code)


@bp.app_template_global("audit_changes")
def _audit_changes(entry: Any) -> list[service.Change]:
    return service.audit_changes(entry)


@bp.app_context_processor
def _dashboard_requests() -> dict[str, Any]:
    """The owner's support requests for the dashboard card: one query, and only on the home page."""
    if request.endpoint != "index" or not current_user.is_authenticated:
        return {}
    membership = current_membership()
    if membership is None or membership.role != "owner":
        return {}
    return {"support_requests": service.list_requests_for_account(get_db(), membership.account_id)}


# --- the queue and search ---------------------------------------------------------------------------------


@bp.route("/support")
@staff_required
def queue() -> Any:
    db = get_db()
    return render_template(
        "support/queue.html",
        queue=service.list_queue(db),
        closed=service.list_recently_closed(db),
        unmatched_count=service.count_unmatched_lines(db),
        q="",
    )


@bp.route("/support/search")
@staff_required
def account_search() -> Any:
    db = get_db()
    q = (request.args.get("q") or "").strip()
    hits = service.search_accounts(db, q)
    if len(hits) == 1 and request.args.get("all") is None:
        return redirect(url_for("support.account_show", account_id=hits[0].account.id))
    return render_template("support/account_search.html", q=q, hits=hits)


# --- the account page -------------------------------------------------------------------------------------


@bp.route("/support/accounts/<int:account_id>")
@staff_required
def account_show(account_id: int) -> Any:
    db = get_db()
    account = _account_or_404(account_id)
    overview = service.get_account_overview(db, account, utcnow())
    return render_template(
        "support/account_show.html",
        o=overview,
        account=account,
        q="",
        totals=ledger.account_totals(db, account.id),
        entries=history(db, account.id)[:50],
        refund_form=RefundStartForm(formdata=None),
    )


@bp.route("/support/files/<int:file_id>")
@staff_required
def file_download(file_id: int) -> Any:
    from portal.documents.views import content_disposition

    stored = get_db().get(StoredFile, file_id)
    if stored is None:
        abort(404)
    try:
        data = documents.read_file(stored)
    except Exception:  # noqa: BLE001 - a file that fails its SHA-256 check is never served
        log.exception("stored document %s failed its check", stored.id)
        abort(500)
    resp = FlaskResponse(data, mimetype=stored.content_type)
    resp.headers["Content-Disposition"] = content_disposition(stored.download_name)
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp


# --- trial and custom plan --------------------------------------------------------------------------------


@bp.route("/support/accounts/<int:account_id>/trial", methods=["GET", "POST"])
@staff_required
def trial_start(account_id: int) -> Any:
    db = get_db()
    account = _account_or_404(account_id)
    now = utcnow()
    state = service.billing.get_subscription_state(db, account.id, now)
    plans = service.trial_plans(db, account.id)
    req = service.get_request(db, _request_arg() or 0)
    if req is not None and req.account_id != account.id:
        req = None
    form = TrialForm()
    form.plan_code.choices = [SelectChoice(p.code, p.title) for p in plans]
    if request.method == "GET" and req is not None and req.plan_code:
        form.plan_code.data = req.plan_code
    if req is not None:
        form.request_id.data = str(req.id)
    status = 200
    if form.validate_on_submit():
        try:
            period = service.switch_on_trial(
                db,
                actor=_actor(),
                account_id=account.id,
                plan_code=form.plan_code.data or "",
                reason=form.reason.data,
                now=now,
                request_id=req.id if req is not None else None,
            )
            db.commit()
        except service.SupportError as exc:
            db.rollback()
            form.plan_code.errors = [str(exc)]
            status = 400
        else:
            flash(
                f"Пробный период «{period.plan.title}» включён для «{account.name}» "
                f"по {period.last_day:%d.%m.%Y} включительно." + (" Заявка закрыта." if req is not None else ""),
                "success",
            )
            return redirect(url_for("support.account_show", account_id=account.id))
    elif request.method == "POST":
        status = 400
    return render_template(
        "support/trial_start.html", account=account, state=state, form=form, plans=plans, req=req
    ), status


@bp.route("/support/accounts/<int:account_id>/custom-plan", methods=["GET", "POST"])
@staff_required
def custom_plan_new(account_id: int) -> Any:
    db = get_db()
    account = _account_or_404(account_id)
    req = service.get_request(db, _request_arg() or 0)
    if req is not None and req.account_id != account.id:
        req = None
    form = CustomPlanForm()
    if request.method == "GET" and req is not None and req.users_expected:
        form.seats.data = str(req.users_expected)
    if req is not None:
        form.request_id.data = str(req.id)
    status = 200
    if form.validate_on_submit():
        try:
            row = service.set_custom_plan(
                db,
                actor=_actor(),
                account_id=account.id,
                seats=form.seats_value,
                storage_bytes=form.storage_bytes,
                monthly_price=form.price_kopecks,
                reason=form.reason.data,
                now=utcnow(),
                request_id=req.id if req is not None else None,
            )
            db.commit()
        except service.SupportError as exc:
            db.rollback()
            form.seats.errors = [str(exc)]
            status = 400
        else:
            flash(
                f"Индивидуальный тариф «{row.as_plan().title}» за {format_amount(row.monthly_price)} ₽ в месяц "
                f"создан для {quoted(account.name)}: владелец увидит его на странице «Тарифы»."
                + (" Заявка закрыта." if req is not None else ""),
                "success",
            )
            return redirect(url_for("support.account_show", account_id=account.id))
    elif request.method == "POST":
        status = 400
    existing = service.billing.list_custom_plans(db, account.id, include_inactive=True)
    return render_template(
        "support/custom_plan_new.html",
        account=account,
        form=form,
        req=req,
        existing=existing,
        largest=PLANS[-1],
        usage=service.billing.get_usage(db, account),
    ), status


# --- invoices ---------------------------------------------------------------------------------------------


def _invoice_or_404(invoice_id: int) -> Invoice:
    invoice = get_db().get(Invoice, invoice_id)
    if invoice is None:
        abort(404)
    return invoice


@bp.route("/support/invoices/<int:invoice_id>/pay", methods=["GET", "POST"])
@staff_required
def invoice_pay(invoice_id: int) -> Any:
    db = get_db()
    invoice = _invoice_or_404(invoice_id)
    account = _account_or_404(invoice.account_id)
    form = InvoicePayForm()
    if request.method == "GET":
        form.paid_on.data = msk_date(utcnow())
    status = 200
    if form.validate_on_submit():
        number = invoice.number
        try:
            service.mark_invoice_paid(
                db,
                invoice.id,
                actor=_actor(),
                bank_reference=form.bank_reference.data,
                paid_on=form.paid_on.data,
                reason=form.reason.data,
                now=utcnow(),
            )
        except service.SupportError as exc:
            form.bank_reference.errors = [str(exc)]
            status = 409 if "уже оплачен" in str(exc) or "отменён" in str(exc) else 400
        else:
            upd = documents.get_upd_for_invoice(db, invoice_id)
            tail = f" УПД № {upd.number} {upd.status_title.lower()}." if upd is not None else ""
            flash(f"Счёт № {number} отмечен оплаченным, тариф подключён.{tail}", "success")
            return redirect(url_for("support.account_show", account_id=account.id, _anchor="invoices"))
    elif request.method == "POST":
        status = 400
    db.refresh(invoice)
    order = db.get(service.billing.Order, invoice.order_id)
    return render_template("support/invoice_pay.html", invoice=invoice, order=order, account=account, form=form), status


def parse_ru_date(raw: str | None) -> date | None:
    """A date from a link's query («01.01.2027» or «2027-01-01»); None for anything else."""
    for fmt in ("%d.%m.%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime((raw or "").strip(), fmt).date()
        except ValueError:
            continue
    return None


@bp.route("/support/orders/<int:order_id>/refund-rights", methods=["GET", "POST"])
@staff_required
def order_refund_rights(order_id: int) -> Any:
    """End a paid order's rights from a chosen day and return the unused days' money: the page shows what the days
    are worth before anything is done."""
    db = get_db()
    order = db.get(service.billing.Order, order_id)
    if order is None:
        abort(404)
    account = _account_or_404(order.account_id)
    form = RightsRefundForm()
    today = msk_date(utcnow())
    if request.method == "GET":
        form.cut_on.data = parse_ru_date(request.args.get("cut_on")) or today + timedelta(days=1)
    status = 200
    cut = None
    try:
        cut = service.billing.rights_cut(db, order, form.cut_on.data or today)
    except service.billing.PurchaseError as exc:
        form.cut_on.errors = [*form.cut_on.errors, str(exc)]
    if request.method == "GET" and cut is not None:
        form.amount.data = format_amount(cut.suggested_refund)
    if form.validate_on_submit():
        try:
            amount = parse_rubles(form.amount.data)
            done = refund_rights(
                db,
                order.id,
                cut_on=form.cut_on.data,
                amount=amount,
                reason=form.reason.data,
                actor=_actor(),
                now=utcnow(),
                config=current_app.config,
            )
            db.commit()
        except (AmountError, ledger.LedgerError) as exc:
            db.rollback()
            form.amount.errors = [str(exc)]
            status = 400
        else:
            documents.form_upds_now(db, [], now=utcnow(), config=current_app.config)
            tail = " Сформирован УКД." if done.ukd_id else ""
            flash(
                f"Права по заказу № {order.id} прекращаются с {form.cut_on.data:%d.%m.%Y}; "
                f"возврат {format_rub(amount)} ждёт выполнения в разделе «Деньги».{tail}",
                "success",
            )
            return redirect(url_for("support.account_show", account_id=account.id))
    elif request.method == "POST":
        status = 400
    return render_template(
        "support/rights_refund.html",
        order=order,
        account=account,
        form=form,
        cut=cut,
        paid=ledger.order_allocated(db, order.id),
    ), status


@bp.route("/support/invoices/<int:invoice_id>/cancel", methods=["GET", "POST"])
@staff_required
def invoice_cancel(invoice_id: int) -> Any:
    db = get_db()
    invoice = _invoice_or_404(invoice_id)
    account = _account_or_404(invoice.account_id)
    form = InvoiceCancelForm()
    status = 200
    if form.validate_on_submit():
        number = invoice.number
        try:
            service.cancel_invoice(db, invoice.id, actor=_actor(), reason=form.reason.data, now=utcnow())
        except service.SupportError as exc:
            form.reason.errors = [str(exc)]
            status = 409
        else:
            flash(f"Счёт № {number} отменён, его заказ закрыт. Номер счёта больше не используется.", "success")
            return redirect(url_for("support.account_show", account_id=account.id, _anchor="invoices"))
    elif request.method == "POST":
        status = 400
    db.refresh(invoice)
    order = db.get(service.billing.Order, invoice.order_id)
    return render_template(
        "support/invoice_cancel.html", invoice=invoice, order=order, account=account, form=form
    ), status


# --- resending a document ---------------------------------------------------------------------------------


@bp.route("/support/documents/<any(invoice, upd):kind>/<int:document_id>/resend", methods=["GET", "POST"])
@staff_required
def document_resend(kind: str, document_id: int) -> Any:
    db = get_db()
    doc = service.get_document(db, kind, document_id)
    if doc is None:
        abort(404)
    account = _account_or_404(doc.account_id)
    to = service.documents_email(db, account.id)
    form = ResendForm()
    status = 200
    if form.validate_on_submit():
        try:
            sent_to = service.resend_document(
                db,
                actor=_actor(),
                kind=kind,
                document_id=document_id,
                reason=form.reason.data,
                now=utcnow(),
                backend=get_email_backend(),
                config=current_app.config,
            )
        except service.SupportError as exc:
            db.rollback()
            form.reason.errors = [str(exc)]
            status = 400
        else:
            flash(f"{doc.title} отправлен на {sent_to}.", "success")
            return redirect(url_for("support.account_show", account_id=account.id, _anchor="documents"))
    elif request.method == "POST":
        status = 400
    return render_template("support/document_resend.html", doc=doc, account=account, to=to, form=form), status


# --- bank statements --------------------------------------------------------------------------------------


@bp.route("/support/statements", methods=["GET", "POST"])
@staff_required
def statement_list() -> Any:
    db = get_db()
    form = StatementForm()
    status = 200
    if form.validate_on_submit():
        upload = form.statement.data
        name = upload.filename or "statement.txt"
        try:
            run = start_statement_import(db, upload.read(), file_name=name, actor=_actor())
        except StatementError as exc:
            db.rollback()
            form.statement.errors = [f"Файл не принят, ничего не загружено. {exc}"]
            status = 400
        else:
            db.commit()
            return redirect(url_for("support.statement_list", run=run.id))
    elif request.method == "POST":
        status = 400
    # The import this page started (?run=): its progress while it runs, then its result and the lines it matched.
    run = state = None
    matched: list[Any] = []
    raw = request.args.get("run", "")
    if raw.isascii() and raw.isdigit() and len(raw) < 10:
        run = get_task_run(db, int(raw))
        if run is None or run.kind != STATEMENT_RUN:
            run = None
        else:
            state = run_state(run)
    raw = request.args.get("import", "")
    if run is not None and run.result_url and "import=" in run.result_url:
        raw = run.result_url.rpartition("=")[2]
    if raw.isascii() and raw.isdigit() and len(raw) < 10:
        matched = statement_lines.list_import_lines(db, int(raw), matched=True)
    return render_template(
        "support/statement_list.html",
        form=form,
        run=run,
        state=state,
        matched=matched,
        run_form=EmptyForm(),
        unmatched=statement_lines.list_unmatched_lines(db),
    ), status


def _line_or_404(line_id: int) -> Any:
    line = service.get_line(get_db(), line_id)
    if line is None:
        abort(404)
    return line


def _render_line(
    line: Any, link_form: LinkForm, dismiss_form: DismissForm, status: int = 200, problem: str | None = None
) -> Any:
    db = get_db()
    candidates = service.candidate_invoices(db, line)
    link_form.invoice_id.choices = [SelectChoice(str(c.invoice.id), c.invoice.number) for c in candidates]
    chosen = None
    raw = (link_form.invoice_id.data or "").strip()
    if raw.isascii() and raw.isdigit() and len(raw) < 10:
        chosen = db.get(Invoice, int(raw))
    elif (link_form.invoice_number.data or "").strip():
        chosen = service.find_open_invoice_by_number(db, link_form.invoice_number.data)
    return render_template(
        "support/line_show.html",
        line=line,
        candidates=candidates,
        link_form=link_form,
        dismiss_form=dismiss_form,
        credit_form=CreditForm(formdata=None, prefix="credit"),
        chosen=chosen,
        mismatch=(chosen is not None and chosen.amount != line.amount),
        problem=problem,
        accounts=service.accounts_by_id(db, [c.account.id for c in candidates]),
    ), status


@bp.route("/support/statements/lines/<int:line_id>")
@staff_required
def line_show(line_id: int) -> Any:
    line = _line_or_404(line_id)
    link_form = LinkForm(formdata=None)
    dismiss_form = DismissForm(formdata=None)
    candidates = service.candidate_invoices(get_db(), line)
    if candidates and candidates[0].number_in_purpose:
        link_form.invoice_id.data = str(candidates[0].invoice.id)
    return _render_line(line, link_form, dismiss_form)


@bp.route("/support/statements/lines/<int:line_id>/link", methods=["POST"])
@staff_required
def line_link(line_id: int) -> Any:
    db = get_db()
    line = _line_or_404(line_id)
    link_form = LinkForm()
    dismiss_form = DismissForm(formdata=None)
    if not link_form.validate_on_submit():
        return _render_line(line, link_form, dismiss_form, 400)
    raw = (link_form.invoice_id.data or "").strip()
    invoice = db.get(Invoice, int(raw)) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None
    if invoice is None:
        invoice = service.find_open_invoice_by_number(db, link_form.invoice_number.data or "")
    if invoice is None:
        link_form.invoice_number.errors = ["Счёт с таким номером не найден."]
        return _render_line(line, link_form, dismiss_form, 400)
    reference = line.reference
    try:
        service.link_payment(
            db,
            line.id,
            invoice.id,
            actor=_actor(),
            confirm_amount_mismatch=bool(link_form.confirm_amount.data),
            reason=link_form.reason.data,
            now=utcnow(),
        )
    except service.AmountMismatchError as exc:
        db.rollback()
        link_form.confirm_amount.errors = [str(exc)]
        link_form.invoice_id.data = str(invoice.id)
        return _render_line(line, link_form, dismiss_form, 409)
    except service.SupportError as exc:
        db.rollback()
        return _render_line(service.get_line(db, line_id), link_form, dismiss_form, 409, problem=str(exc))
    db.refresh(invoice)
    outcome = (
        "счёт оплачен, тариф подключён"
        if invoice.status == "paid"
        else "зачтён в счёт, остаток к оплате на странице счёта"
    )
    flash(f"Платёж {reference} привязан к счёту № {invoice.number}: {outcome}.", "success")
    return redirect(url_for("support.statement_list"))


@bp.route("/support/statements/lines/<int:line_id>/dismiss", methods=["POST"])
@staff_required
def line_dismiss(line_id: int) -> Any:
    db = get_db()
    line = _line_or_404(line_id)
    dismiss_form = DismissForm()
    link_form = LinkForm(formdata=None)
    if not dismiss_form.validate_on_submit():
        return _render_line(line, link_form, dismiss_form, 400)
    reference = line.reference
    try:
        service.dismiss_payment(db, line.id, actor=_actor(), reason=dismiss_form.reason.data, now=utcnow())
    except service.SupportError as exc:
        db.rollback()
        return _render_line(service.get_line(db, line_id), link_form, dismiss_form, 409, problem=str(exc))
    flash(f"Платёж {reference} отмечен как не относящийся к нашим счетам.", "success")
    return redirect(url_for("support.statement_list"))


# --- requests ---------------------------------------------------------------------------------------------


@bp.route("/support/requests/<int:request_id>")
@staff_required
def request_show(request_id: int) -> Any:
    db = get_db()
    req = service.get_request(db, request_id)
    if req is None:
        abort(404)
    account = _account_or_404(req.account_id)
    now = utcnow()
    return render_template(
        "support/request_show.html",
        req=req,
        account=account,
        state=service.billing.get_subscription_state(db, account.id, now),
        usage=service.billing.get_usage(db, account),
        form=ResolveForm(formdata=None),
        people=service.users_by_id(db, [req.created_by_user_id, req.taken_by_user_id, req.resolved_by_user_id]),
        plan_title=service.plan_title,
        kinds=RequestKind,
    )


@bp.route("/support/requests/<int:request_id>/take", methods=["POST"])
@staff_required
def request_take(request_id: int) -> Any:
    db = get_db()  # CSRF is checked for every POST by the app-wide CSRFProtect
    try:
        service.take_request(db, request_id, actor=_actor(), now=utcnow())
        db.commit()
    except service.SupportError as exc:
        db.rollback()
        flash(str(exc), "warning")
    else:
        flash("Заявка взята в работу: коллеги видят, что ей занимаетесь вы.", "success")
    return redirect(url_for("support.request_show", request_id=request_id))


@bp.route("/support/requests/<int:request_id>/resolve", methods=["POST"])
@staff_required
def request_resolve(request_id: int) -> Any:
    db = get_db()
    req = service.get_request(db, request_id)
    if req is None:
        abort(404)
    form = ResolveForm()
    outcome = request.form.get("outcome", "")
    problem = None
    if form.validate_on_submit():
        try:
            service.resolve_request(db, req.id, actor=_actor(), status=outcome, note=form.note.data, now=utcnow())
            db.commit()
        except service.SupportError as exc:
            db.rollback()
            problem = str(exc)
        else:
            word = "выполнена" if outcome == RequestStatus.DONE else "отклонена"
            flash(f"Заявка № {req.id} {word}. Владелец увидит ответ на главной странице.", "success")
            return redirect(url_for("support.queue"))
    account = _account_or_404(req.account_id)
    now = utcnow()
    return render_template(
        "support/request_show.html",
        req=req,
        account=account,
        state=service.billing.get_subscription_state(db, account.id, now),
        usage=service.billing.get_usage(db, account),
        form=form,
        people=service.users_by_id(db, [req.created_by_user_id, req.taken_by_user_id, req.resolved_by_user_id]),
        plan_title=service.plan_title,
        kinds=RequestKind,
        problem=problem,
    ), 400


# --- the audit log ----------------------------------------------------------------------------------------


def _int_arg(name: str) -> int | None:
    raw = (request.args.get(name) or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None


@bp.route("/support/audit")
@staff_required
def audit_list() -> Any:
    db = get_db()
    account_id = _int_arg("account")
    raw_actor = (request.args.get("actor") or "").strip()
    actor: int | str | None = None
    if raw_actor == service.SYSTEM_ACTOR:
        actor = service.SYSTEM_ACTOR
    elif raw_actor.isascii() and raw_actor.isdigit() and len(raw_actor) < 10:
        actor = int(raw_actor)
    action = (request.args.get("action") or "").strip()[:64] or None
    after, before = keys_from_args(request.args, service.AUDIT_KEY_TYPES)
    page = service.list_audit(db, account_id=account_id, actor=actor, action=action, after=after, before=before)
    actions = service.list_audit_actions(action)
    return render_template(
        "support/audit_list.html",
        page=page,
        accounts=service.accounts_by_id(db, [e.account_id for e in page.rows] + [account_id]),
        account_id=account_id,
        actor=raw_actor,
        action=action or "",
        staff=service.list_staff(db),
        actions=actions,
        groups=service.ACTION_GROUPS,
        filters={"account": account_id, "actor": raw_actor or None, "action": action},
    )


# --- money: what could not be placed, refunds, crediting a payment to a company ---------------------------------


@bp.route("/support/money")
@staff_required
def money_list() -> Any:
    db = get_db()
    attention = ledger.list_attention(db)
    refunds = list_refunds(db, open_only=True)
    # One form per row, each with its own element ids (a label must name exactly one field on the page); the
    # field names stay plain, since each row's form posts to its own URL.
    return render_template(
        "support/money_list.html",
        attention=[(r, _ids(ConfirmedActionForm(formdata=None), f"receipt{r.id}")) for r in attention],
        refunds=[
            (
                f,
                _ids(ConfirmedActionForm(formdata=None), f"refund{f.id}"),
                _ids(RefundDoneForm(formdata=None), f"done{f.id}"),
                _ids(ConfirmedActionForm(formdata=None), f"cancel{f.id}"),
            )
            for f in refunds
        ],
        unmatched=statement_lines.list_unmatched_lines(db),
    )


def _ids(form: Any, suffix: str) -> Any:
    for f in form:
        f.id = f"{f.id}-{suffix}"
        f.label.field_id = f.id
    return form


def _money_action(action: Any, form: Any, success: str) -> Any:
    """Validate a confirmed money action, run it, commit; a refusal is shown on the money page with a 409."""
    db = get_db()
    if not form.validate_on_submit():
        flash("; ".join(e for errors in form.errors.values() for e in errors), "error")
        return redirect(url_for("support.money_list")), 303
    try:
        action(db)
        db.commit()
    except (ledger.LedgerError, DocumentsError, ProviderError) as exc:
        db.rollback()
        flash(str(getattr(exc, "message", exc)), "error")
        return redirect(url_for("support.money_list")), 303
    flash(success, "success")
    return redirect(url_for("support.money_list"))


@bp.route("/support/money/receipts/<int:receipt_id>/resolve", methods=["POST"])
@staff_required
def receipt_resolve(receipt_id: int) -> Any:
    form = ConfirmedActionForm()
    return _money_action(
        lambda db: ledger.resolve_attention(db, receipt_id, actor=_actor(), note=form.reason.data, now=utcnow()),
        form,
        "Отмечено как разобранное.",
    )


@bp.route("/support/money/refunds/<int:refund_id>/provider", methods=["POST"])
@staff_required
def refund_provider(refund_id: int) -> Any:
    form = ConfirmedActionForm()

    def run(db: Any) -> None:
        refund = db.get(Refund, refund_id)
        if refund is None:
            abort(404)
        receipt = db.get(Receipt, refund.receipt_id) if refund.receipt_id else None
        payment = db.get(Payment, receipt.payment_id) if receipt is not None and receipt.payment_id else None
        provider = get_provider(current_app, payment.provider if payment is not None else None)
        refund_through_provider(
            db,
            refund_id,
            provider=provider,
            customer=customer_for_account(db, refund.account_id),
            actor=_actor(),
            now=utcnow(),
        )

    return _money_action(run, form, "Возврат отправлен платёжной системе: деньги вернутся на карту плательщика.")


@bp.route("/support/money/refunds/<int:refund_id>/done", methods=["POST"])
@staff_required
def refund_done(refund_id: int) -> Any:
    form = RefundDoneForm()
    return _money_action(
        lambda db: complete_bank_refund(db, refund_id, actor=_actor(), reference=form.reference.data, now=utcnow()),
        form,
        "Возврат переводом отмечен выполненным.",
    )


@bp.route("/support/money/refunds/<int:refund_id>/cancel", methods=["POST"])
@staff_required
def refund_cancel(refund_id: int) -> Any:
    form = ConfirmedActionForm()
    return _money_action(
        lambda db: cancel_refund(db, refund_id, actor=_actor(), reason=form.reason.data, now=utcnow()),
        form,
        "Возврат отменён: деньги снова на балансе компании.",
    )


@bp.route("/support/accounts/<int:account_id>/refund", methods=["POST"])
@staff_required
def account_refund(account_id: int) -> Any:
    form = RefundStartForm()
    return _money_action(
        lambda db: request_refund(db, account_id, actor=_actor(), now=utcnow(), reason=form.reason.data),
        form,
        "Возврат баланса запрошен: выполните его ниже.",
    )


@bp.route("/support/statements/lines/<int:line_id>/credit", methods=["POST"])
@staff_required
def line_credit(line_id: int) -> Any:
    form = CreditForm(prefix="credit")
    raw = (form.account_id.data or "").strip()
    account_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 0
    return _money_action(
        lambda db: statement_lines.credit_statement_line(
            db, line_id, account_id, actor=_actor(), reason=form.reason.data, now=utcnow()
        ),
        form,
        f"Платёж зачислен на баланс компании № {account_id}.",
    )
