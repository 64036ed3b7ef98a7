"""The support console under /support: the queue, account search and page, confirmed actions, statements, audit.

Every view here is staff-only (404 for everyone else). The blueprint has no url_prefix because it also carries the
owners' request page (/support-requests/new, see owner_views.py), which must not live under the staff-only /support.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask import Response as FlaskResponse
from flask_login import current_user
from wtforms import SelectChoice

from portal.accounts.access import current_membership, staff_required
from portal.audit import labels as audit_labels
from portal.audit import paging as audit_paging
from portal.billing.catalog import PLANS
from portal.billing.custom_plans import list_custom_plans
from portal.billing.display import format_storage
from portal.billing.models import Order
from portal.billing.settlement import rights_cut
from portal.billing.subscriptions import PurchaseError, get_subscription_state, get_usage
from portal.db import get_db, utcnow
from portal.documents import service as documents
from portal.documents.models import Invoice, StoredFile
from portal.documents.views import content_disposition
from portal.money import format_amount
from portal.nav import register_nav
from portal.pagination import keys_from_args
from portal.payments import ledger, refunds, reports
from portal.support import actions, errors, money_views, overview, owner_views, resend, search
from portal.support import requests as support_requests
from portal.support.amounts import AmountError, parse_rubles
from portal.support.email import get_email_backend
from portal.support.forms import (
    CustomPlanForm,
    InvoiceCancelForm,
    InvoicePayForm,
    RefundStartForm,
    ResendForm,
    ResolveForm,
    RightsRefundForm,
    TrialForm,
)
from portal.support.models import RequestKind
from portal.support.viewutil import account_or_404, current_actor, parse_id
from portal.timeutil import msk_date

log = logging.getLogger(__name__)

bp = Blueprint("support", __name__)
register_nav("support.queue", "Поддержка", ("staff",), order=90)
# The owners' request page is a view of this blueprint too (endpoint support.request_new), outside /support.
owner_views.register(bp)
# The money pages (statements, refunds) are views of this blueprint too, kept in their own module.
money_views.register(bp)


@bp.app_template_filter("action_title")
def _action_title(action: str) -> str:
    return audit_labels.action_title(action)


@bp.app_template_filter("storage_size")
def _storage_filter(n: int) -> str:
    return format_storage(n)


@bp.app_template_filter("support_plan_title")
def _plan_title_filter(code: str | None) -> str:
    return support_requests.plan_title(code)


@bp.app_template_global("audit_changes")
def _audit_changes(entry: Any) -> list[audit_labels.Change]:
    return audit_labels.audit_changes(entry)


@bp.app_context_processor
def _dashboard_requests() -> dict[str, Any]:
    """The owner's support requests for the dashboard card: one query, and only on the home page."""
    if request.endpoint != "index" or not current_user.is_authenticated:
        return {}
    membership = current_membership()
    if membership is None or membership.role != "owner":
        return {}
    return {"support_requests": support_requests.list_requests_for_account(get_db(), membership.account_id)}


# --- the queue and search ---------------------------------------------------------------------------------


@bp.route("/support")
@staff_required
def queue() -> Any:
    db = get_db()
    return render_template(
        "support/queue.html",
        queue=support_requests.list_queue(db),
        closed=support_requests.list_recently_closed(db),
        unmatched_count=overview.count_unmatched_lines(db),
        q="",
    )


@bp.route("/support/search")
@staff_required
def account_search() -> Any:
    db = get_db()
    q = (request.args.get("q") or "").strip()
    hits = search.search_accounts(db, q)
    if len(hits) == 1 and request.args.get("all") is None:
        return redirect(url_for("support.account_show", account_id=hits[0].account.id))
    return render_template("support/account_search.html", q=q, hits=hits)


# --- the account page -------------------------------------------------------------------------------------


@bp.route("/support/accounts/<int:account_id>")
@staff_required
def account_show(account_id: int) -> Any:
    db = get_db()
    account = account_or_404(account_id)
    page = overview.get_account_overview(db, account, utcnow())
    return render_template(
        "support/account_show.html",
        o=page,
        account=account,
        q="",
        totals=ledger.account_totals(db, account.id),
        entries=reports.history(db, account.id)[:50],
        refund_form=RefundStartForm(formdata=None),
    )


@bp.route("/support/files/<int:file_id>")
@staff_required
def file_download(file_id: int) -> Any:
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


# --- confirmed actions: trial, custom plan, invoices, rights refund, resending ------------------------------


def _confirm_then_act(
    form: Any,
    act: Callable[[], str],
    *,
    error_field: Any,
    done_url: str,
    refused: Callable[[Exception], int] = lambda _exc: 400,
    refusals: tuple[type[Exception], ...] = (errors.SupportError,),
) -> Any:
    """Run a confirmed action once its form validates: flash what `act` returns and redirect to `done_url`; a
    refusal is rolled back and shown on `error_field`. Returns the redirect, or the status to show the form with."""
    if not form.validate_on_submit():
        return 400 if request.method == "POST" else 200
    try:
        message = act()
    except refusals as exc:
        get_db().rollback()
        error_field.errors = [str(exc)]
        return refused(exc)
    flash(message, "success")
    return redirect(done_url)


def _request_for(account: Any, form: Any) -> Any:
    """The request an action was opened from (?request=), if it is this account's; the form carries it on."""
    req = support_requests.get_request(
        get_db(), parse_id(request.values.get("request_id") or request.values.get("request")) or 0
    )
    if req is None or req.account_id != account.id:
        return None
    form.request_id.data = str(req.id)
    return req


@bp.route("/support/accounts/<int:account_id>/trial", methods=["GET", "POST"])
@staff_required
def trial_start(account_id: int) -> Any:
    db, account, now = get_db(), account_or_404(account_id), utcnow()
    state = get_subscription_state(db, account.id, now)
    plans = support_requests.trial_plans(db, account.id)
    form = TrialForm()
    form.plan_code.choices = [SelectChoice(p.code, p.title) for p in plans]
    req = _request_for(account, form)
    if request.method == "GET" and req is not None and req.plan_code:
        form.plan_code.data = req.plan_code

    act = functools.partial(_switch_on_trial, account, form, req, now)
    done = _confirm_then_act(form, act, error_field=form.plan_code, done_url=_account_url(account.id))
    if not isinstance(done, int):
        return done
    return render_template(
        "support/trial_start.html", account=account, state=state, form=form, plans=plans, req=req
    ), done


@bp.route("/support/accounts/<int:account_id>/custom-plan", methods=["GET", "POST"])
@staff_required
def custom_plan_new(account_id: int) -> Any:
    db, account = get_db(), account_or_404(account_id)
    form = CustomPlanForm()
    req = _request_for(account, form)
    if request.method == "GET" and req is not None and req.users_expected:
        form.seats.data = str(req.users_expected)

    act = functools.partial(_set_custom_plan, account, form, req)
    done = _confirm_then_act(form, act, error_field=form.seats, done_url=_account_url(account.id))
    if not isinstance(done, int):
        return done
    existing = list_custom_plans(db, account.id, include_inactive=True)
    usage = get_usage(db, account)
    page = {"account": account, "form": form, "req": req, "existing": existing, "largest": PLANS[-1], "usage": usage}
    return render_template("support/custom_plan_new.html", **page), done


def _switch_on_trial(account: Any, form: TrialForm, req: Any, now: datetime) -> str:
    db = get_db()
    request_id = req.id if req is not None else None
    period = actions.switch_on_trial(
        db,
        actor=current_actor(),
        account_id=account.id,
        plan_code=form.plan_code.data or "",
        reason=form.reason.data,
        now=now,
        request_id=request_id,
    )
    db.commit()
    return actions.trial_done_message(period, account.name, closed_request=request_id is not None)


def _set_custom_plan(account: Any, form: CustomPlanForm, req: Any) -> str:
    db = get_db()
    row = actions.set_custom_plan(
        db,
        actor=current_actor(),
        account_id=account.id,
        seats=form.seats_value,
        storage_bytes=form.storage_bytes,
        monthly_price=form.price_kopecks,
        reason=form.reason.data,
        now=utcnow(),
        request_id=req.id if req is not None else None,
    )
    db.commit()
    return actions.custom_plan_done_message(row, account.name, closed_request=req is not None)


def _mark_invoice_paid(invoice: Invoice, form: InvoicePayForm) -> str:
    db = get_db()
    number, invoice_id = invoice.number, invoice.id
    actions.mark_invoice_paid(
        db,
        invoice_id,
        actor=current_actor(),
        bank_reference=form.bank_reference.data,
        paid_on=form.paid_on.data,
        reason=form.reason.data,
        now=utcnow(),
    )
    return actions.invoice_paid_message(db, number, invoice_id)


def _account_url(account_id: int, anchor: str | None = None) -> str:
    return url_for("support.account_show", account_id=account_id, _anchor=anchor)


def _invoice_and_account(invoice_id: int) -> tuple[Invoice, Any]:
    """The invoice and the company it bills; 404 for an unknown invoice."""
    invoice = get_db().get(Invoice, invoice_id)
    if invoice is None:
        abort(404)
    return invoice, account_or_404(invoice.account_id)


def _conflict_409(exc: Exception) -> int:
    return 409 if isinstance(exc, errors.InvoiceNotPayable) else 400


@bp.route("/support/invoices/<int:invoice_id>/pay", methods=["GET", "POST"])
@staff_required
def invoice_pay(invoice_id: int) -> Any:
    db = get_db()
    invoice, account = _invoice_and_account(invoice_id)
    form = InvoicePayForm()
    if request.method == "GET":
        form.paid_on.data = msk_date(utcnow())

    act = functools.partial(_mark_invoice_paid, invoice, form)
    url = _account_url(account.id, "invoices")
    done = _confirm_then_act(form, act, error_field=form.bank_reference, done_url=url, refused=_conflict_409)
    if not isinstance(done, int):
        return done
    db.refresh(invoice)
    order = db.get(Order, invoice.order_id)
    return render_template("support/invoice_pay.html", invoice=invoice, order=order, account=account, form=form), done


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
    order = db.get(Order, order_id) or abort(404)
    account = account_or_404(order.account_id)
    form = RightsRefundForm()
    if request.method == "GET":
        form.cut_on.data = parse_ru_date(request.args.get("cut_on")) or msk_date(utcnow()) + timedelta(days=1)
    cut = _rights_cut(order, form)

    act = functools.partial(_refund_rights, order, form)
    refusals = (AmountError, ledger.LedgerError)
    done = _confirm_then_act(form, act, error_field=form.amount, done_url=_account_url(account.id), refusals=refusals)
    if not isinstance(done, int):
        return done
    paid = ledger.order_allocated(db, order.id)
    return render_template(
        "support/rights_refund.html", order=order, account=account, form=form, cut=cut, paid=paid
    ), done


def _refund_rights(order: Any, form: RightsRefundForm) -> str:
    db = get_db()
    amount = parse_rubles(form.amount.data)
    done = refunds.refund_rights(
        db,
        order.id,
        cut_on=form.cut_on.data,
        amount=amount,
        reason=form.reason.data,
        actor=current_actor(),
        now=utcnow(),
        config=current_app.config,
    )
    db.commit()
    documents.form_upds_now(db, [], now=utcnow(), config=current_app.config)
    return actions.rights_refund_message(order.id, form.cut_on.data, amount, done.ukd_id)


def _rights_cut(order: Any, form: Any) -> Any:
    """What ending the order's rights on the chosen day is worth; a day that cannot be chosen is a field error."""
    try:
        cut = rights_cut(get_db(), order, form.cut_on.data or msk_date(utcnow()))
    except PurchaseError as exc:
        form.cut_on.errors = [*form.cut_on.errors, str(exc)]
        return None
    if request.method == "GET":
        form.amount.data = format_amount(cut.suggested_refund)
    return cut


@bp.route("/support/invoices/<int:invoice_id>/cancel", methods=["GET", "POST"])
@staff_required
def invoice_cancel(invoice_id: int) -> Any:
    db = get_db()
    invoice, account = _invoice_and_account(invoice_id)
    form = InvoiceCancelForm()

    def act() -> str:
        number = invoice.number
        actions.cancel_invoice(db, invoice.id, actor=current_actor(), reason=form.reason.data, now=utcnow())
        return f"Счёт № {number} отменён, его заказ закрыт. Номер счёта больше не используется."

    url = _account_url(account.id, "invoices")
    done = _confirm_then_act(form, act, error_field=form.reason, done_url=url, refused=lambda _exc: 409)
    if not isinstance(done, int):
        return done
    db.refresh(invoice)
    order = db.get(Order, invoice.order_id)
    return render_template(
        "support/invoice_cancel.html", invoice=invoice, order=order, account=account, form=form
    ), done


@bp.route("/support/documents/<any(invoice, upd):kind>/<int:document_id>/resend", methods=["GET", "POST"])
@staff_required
def document_resend(kind: str, document_id: int) -> Any:
    db = get_db()
    doc = resend.get_document(db, kind, document_id) or abort(404)
    account = account_or_404(doc.account_id)
    to = resend.documents_email(db, account.id)
    form = ResendForm()

    def act() -> str:
        sent_to = resend.resend_document(
            db,
            actor=current_actor(),
            kind=kind,
            document_id=document_id,
            reason=form.reason.data,
            now=utcnow(),
            backend=get_email_backend(),
            config=current_app.config,
        )
        return f"{doc.title} отправлен на {sent_to}."

    done = _confirm_then_act(form, act, error_field=form.reason, done_url=_account_url(account.id, "documents"))
    if not isinstance(done, int):
        return done
    return render_template("support/document_resend.html", doc=doc, account=account, to=to, form=form), done


# --- requests ---------------------------------------------------------------------------------------------


def _request_or_404(request_id: int) -> Any:
    req = support_requests.get_request(get_db(), request_id)
    if req is None:
        abort(404)
    return req


def _render_request(req: Any, form: ResolveForm, problem: str | None = None) -> Any:
    db = get_db()
    account = account_or_404(req.account_id)
    now = utcnow()
    return render_template(
        "support/request_show.html",
        req=req,
        account=account,
        state=get_subscription_state(db, account.id, now),
        usage=get_usage(db, account),
        form=form,
        people=overview.users_by_id(db, [req.created_by_user_id, req.taken_by_user_id, req.resolved_by_user_id]),
        plan_title=support_requests.plan_title,
        kinds=RequestKind,
        problem=problem,
    )


@bp.route("/support/requests/<int:request_id>")
@staff_required
def request_show(request_id: int) -> Any:
    return _render_request(_request_or_404(request_id), ResolveForm(formdata=None))


@bp.route("/support/requests/<int:request_id>/take", methods=["POST"])
@staff_required
def request_take(request_id: int) -> Any:
    db = get_db()  # CSRF is checked for every POST by the app-wide CSRFProtect
    try:
        support_requests.take_request(db, request_id, actor=current_actor(), now=utcnow())
        db.commit()
    except errors.SupportError as exc:
        db.rollback()
        flash(str(exc), "warning")
    else:
        flash("Заявка взята в работу: коллеги видят, что ей занимаетесь вы.", "success")
    return redirect(url_for("support.request_show", request_id=request_id))


@bp.route("/support/requests/<int:request_id>/resolve", methods=["POST"])
@staff_required
def request_resolve(request_id: int) -> Any:
    db = get_db()
    req = _request_or_404(request_id)
    form = ResolveForm()
    outcome = request.form.get("outcome", "")
    problem = None
    if form.validate_on_submit():
        try:
            support_requests.resolve_request(
                db, req.id, actor=current_actor(), status=outcome, note=form.note.data, now=utcnow()
            )
            db.commit()
        except errors.SupportError as exc:
            db.rollback()
            problem = str(exc)
        else:
            flash(support_requests.resolved_message(req.id, outcome), "success")
            return redirect(url_for("support.queue"))
    return _render_request(req, form, problem), 400


# --- the audit log ----------------------------------------------------------------------------------------


@bp.route("/support/audit")
@staff_required
def audit_list() -> Any:
    db = get_db()
    account_id = parse_id(request.args.get("account"))
    raw_actor = (request.args.get("actor") or "").strip()
    actor: int | str | None = None
    if raw_actor == audit_paging.SYSTEM_ACTOR:
        actor = audit_paging.SYSTEM_ACTOR
    elif parse_id(raw_actor) is not None:
        actor = int(raw_actor)
    action = (request.args.get("action") or "").strip()[:64] or None
    after, before = keys_from_args(request.args, audit_paging.AUDIT_KEY_TYPES)
    page = audit_paging.list_audit(db, account_id=account_id, actor=actor, action=action, after=after, before=before)
    return render_template(
        "support/audit_list.html",
        page=page,
        accounts=overview.accounts_by_id(db, [e.account_id for e in page.rows] + [account_id]),
        account_id=account_id,
        actor=raw_actor,
        action=action or "",
        staff=overview.list_staff(db),
        actions=audit_paging.list_audit_actions(action),
        groups=audit_labels.ACTION_GROUPS,
        filters={"account": account_id, "actor": raw_actor or None, "action": action},
    )
