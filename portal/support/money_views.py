"""The console's money pages: bank statements and their payments, money to place, refunds."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from wtforms import SelectChoice

from portal.accounts.access import staff_required
from portal.accounts.forms import EmptyForm
from portal.db import get_db, utcnow
from portal.documents.invoices import DocumentsError
from portal.documents.models import Invoice
from portal.payments import ledger, refunds, statement_lines
from portal.payments.models import Payment, Receipt, Refund
from portal.payments.providers import get_provider
from portal.payments.providers.base import ProviderError
from portal.payments.service import customer_for_account
from portal.payments.tasks import STATEMENT_RUN
from portal.statement_upload import accept_statement
from portal.support import actions, errors, overview
from portal.support.forms import (
    ConfirmedActionForm,
    CreditForm,
    DismissForm,
    LinkForm,
    RefundDoneForm,
    RefundStartForm,
    StatementForm,
)
from portal.support.viewutil import current_actor, parse_id
from portal.tasks.runs import get_run as get_task_run
from portal.tasks.runs import run_state

# --- bank statements --------------------------------------------------------------------------------------


@staff_required
def statement_list() -> Any:
    db = get_db()
    form = StatementForm()
    status = 400 if request.method == "POST" else 200
    if form.validate_on_submit() and (run := accept_statement(db, form.statement, actor=current_actor())) is not None:
        return redirect(url_for("support.statement_list", run=run.id))
    run, state, matched = _statement_run(db)
    return render_template(
        "support/statement_list.html",
        form=form,
        run=run,
        state=state,
        matched=matched,
        run_form=EmptyForm(),
        unmatched=statement_lines.list_unmatched_lines(db),
    ), status


def _statement_run(db: Any) -> tuple[Any, Any, list[Any]]:
    """The import this page started (?run=): its progress while it runs, then its result and the lines it matched."""
    run = state = None
    run_id = parse_id(request.args.get("run", ""))
    if run_id is not None:
        run = get_task_run(db, run_id)
        if run is None or run.kind != STATEMENT_RUN:
            run = None
        else:
            state = run_state(run)
    raw = request.args.get("import", "")
    if run is not None and run.result_url and "import=" in run.result_url:
        raw = run.result_url.rpartition("=")[2]
    import_id = parse_id(raw)
    return run, state, ([] if import_id is None else statement_lines.list_import_lines(db, import_id, matched=True))


def _line_or_404(line_id: int) -> Any:
    line = actions.get_line(get_db(), line_id)
    if line is None:
        abort(404)
    return line


def _render_line(
    line: Any, link_form: LinkForm, dismiss_form: DismissForm, status: int = 200, problem: str | None = None
) -> Any:
    db = get_db()
    candidates = actions.candidate_invoices(db, line)
    link_form.invoice_id.choices = [SelectChoice(str(c.invoice.id), c.invoice.number) for c in candidates]
    chosen = None
    invoice_id = parse_id(link_form.invoice_id.data)
    if invoice_id is not None:
        chosen = db.get(Invoice, invoice_id)
    elif (link_form.invoice_number.data or "").strip():
        chosen = actions.find_open_invoice_by_number(db, link_form.invoice_number.data)
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
        accounts=overview.accounts_by_id(db, [c.account.id for c in candidates]),
    ), status


@staff_required
def line_show(line_id: int) -> Any:
    line = _line_or_404(line_id)
    link_form = LinkForm(formdata=None)
    dismiss_form = DismissForm(formdata=None)
    candidates = actions.candidate_invoices(get_db(), line)
    if candidates and candidates[0].number_in_purpose:
        link_form.invoice_id.data = str(candidates[0].invoice.id)
    return _render_line(line, link_form, dismiss_form)


@staff_required
def line_link(line_id: int) -> Any:
    db = get_db()
    line = _line_or_404(line_id)
    link_form, dismiss_form = LinkForm(), DismissForm(formdata=None)
    if not link_form.validate_on_submit():
        return _render_line(line, link_form, dismiss_form, 400)
    invoice = actions.invoice_to_link(db, parse_id(link_form.invoice_id.data), link_form.invoice_number.data)
    if invoice is None:
        link_form.invoice_number.errors = ["Счёт с таким номером не найден."]
        return _render_line(line, link_form, dismiss_form, 400)
    confirmed = bool(link_form.confirm_amount.data)
    try:
        message = actions.link_payment_and_say(
            db,
            line,
            invoice,
            actor=current_actor(),
            confirmed=confirmed,
            reason=link_form.reason.data,
            now=utcnow(),
        )
    except errors.SupportError as exc:
        db.rollback()
        return _link_refused(exc, line_id, link_form, dismiss_form, invoice)
    flash(message, "success")
    return redirect(url_for("support.statement_list"))


def _link_refused(
    exc: errors.SupportError, line_id: int, link_form: LinkForm, dismiss_form: DismissForm, invoice: Any
) -> Any:
    """A different amount asks for the confirmation on the same invoice; any other refusal is shown as a problem."""
    if isinstance(exc, errors.AmountMismatchError):
        link_form.confirm_amount.errors = [str(exc)]
        link_form.invoice_id.data = str(invoice.id)
        return _render_line(_line_or_404(line_id), link_form, dismiss_form, 409)
    return _render_line(actions.get_line(get_db(), line_id), link_form, dismiss_form, 409, problem=str(exc))


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
        actions.dismiss_payment(db, line.id, actor=current_actor(), reason=dismiss_form.reason.data, now=utcnow())
    except errors.SupportError as exc:
        db.rollback()
        return _render_line(actions.get_line(db, line_id), link_form, dismiss_form, 409, problem=str(exc))
    flash(f"Платёж {reference} отмечен как не относящийся к нашим счетам.", "success")
    return redirect(url_for("support.statement_list"))


# --- money: what could not be placed, refunds, crediting a payment to a company ---------------------------------


@staff_required
def money_list() -> Any:
    db = get_db()
    attention = ledger.list_attention(db)
    open_refunds = refunds.list_refunds(db, open_only=True)
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
            for f in open_refunds
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


@staff_required
def receipt_resolve(receipt_id: int) -> Any:
    form = ConfirmedActionForm()
    return _money_action(
        lambda db: ledger.resolve_attention(db, receipt_id, actor=current_actor(), note=form.reason.data, now=utcnow()),
        form,
        "Отмечено как разобранное.",
    )


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
        refunds.refund_through_provider(
            db,
            refund_id,
            provider=provider,
            customer=customer_for_account(db, refund.account_id),
            actor=current_actor(),
            now=utcnow(),
        )

    return _money_action(run, form, "Возврат отправлен платёжной системе: деньги вернутся на карту плательщика.")


@staff_required
def refund_done(refund_id: int) -> Any:
    form = RefundDoneForm()
    return _money_action(
        lambda db: refunds.complete_bank_refund(
            db, refund_id, actor=current_actor(), reference=form.reference.data, now=utcnow()
        ),
        form,
        "Возврат переводом отмечен выполненным.",
    )


@staff_required
def refund_cancel(refund_id: int) -> Any:
    form = ConfirmedActionForm()
    return _money_action(
        lambda db: refunds.cancel_refund(db, refund_id, actor=current_actor(), reason=form.reason.data, now=utcnow()),
        form,
        "Возврат отменён: деньги снова на балансе компании.",
    )


@staff_required
def account_refund(account_id: int) -> Any:
    form = RefundStartForm()
    return _money_action(
        lambda db: refunds.request_refund(db, account_id, actor=current_actor(), now=utcnow(), reason=form.reason.data),
        form,
        "Возврат баланса запрошен: выполните его ниже.",
    )


@staff_required
def line_credit(line_id: int) -> Any:
    form = CreditForm(prefix="credit")
    account_id = parse_id(form.account_id.data) or 0
    return _money_action(
        lambda db: statement_lines.credit_statement_line(
            db, line_id, account_id, actor=current_actor(), reason=form.reason.data, now=utcnow()
        ),
        form,
        f"Платёж зачислен на баланс компании № {account_id}.",
    )


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/support/statements", "statement_list", statement_list, methods=["GET", "POST"])
    bp.add_url_rule("/support/statements/lines/<int:line_id>", "line_show", line_show)
    bp.add_url_rule("/support/statements/lines/<int:line_id>/link", "line_link", line_link, methods=["POST"])
    bp.add_url_rule("/support/statements/lines/<int:line_id>/dismiss", "line_dismiss", line_dismiss, methods=["POST"])
    bp.add_url_rule("/support/money", "money_list", money_list)
    bp.add_url_rule(
        "/support/money/receipts/<int:receipt_id>/resolve", "receipt_resolve", receipt_resolve, methods=["POST"]
    )
    bp.add_url_rule(
        "/support/money/refunds/<int:refund_id>/provider", "refund_provider", refund_provider, methods=["POST"]
    )
    bp.add_url_rule("/support/money/refunds/<int:refund_id>/done", "refund_done", refund_done, methods=["POST"])
    bp.add_url_rule("/support/money/refunds/<int:refund_id>/cancel", "refund_cancel", refund_cancel, methods=["POST"])
    bp.add_url_rule("/support/accounts/<int:account_id>/refund", "account_refund", account_refund, methods=["POST"])
    bp.add_url_rule("/support/statements/lines/<int:line_id>/credit", "line_credit", line_credit, methods=["POST"])
