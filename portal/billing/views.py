"""Billing pages: the plans, checkout, the license agreement, and cancelling an unpaid order."""

from __future__ import annotations

import logging
import math
import secrets
import time
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter import RequestLimit
from flask_limiter.util import get_remote_address
from flask_login import current_user

from portal.accounts.access import current_account, current_membership, public, require_account, roles_required
from portal.accounts.forms import EmptyForm
from portal.accounts.models import Role
from portal.billing.catalog import PERIODS
from portal.billing.checkout_flow import (
    CheckoutRequest,
    Outcome,
    Refused,
    cancel_scheduled_change,
    check_submission,
    checkout_page,
    open_checkout,
    parse_months,
    place_order,
)
from portal.billing.display import days_ru, format_storage, months_ru, users_ru, users_upto_ru, users_word
from portal.billing.forms import CheckoutForm
from portal.billing.license import LICENSE_VERSIONS, get_license, seller_context
from portal.billing.orders import cancel_order, change_plans, get_order, get_scheduled_period
from portal.billing.plan_cards import plans_page
from portal.billing.subscriptions import PeriodInfo, PurchaseError, get_subscription_state
from portal.db import get_db, utcnow
from portal.extensions import limiter
from portal.nav import register_nav
from portal.payments.ledger import order_allocated
from portal.wording import minutes_ru

log = logging.getLogger(__name__)

bp = Blueprint("billing", __name__)

register_nav("billing.plans", "Тарифы", ("owner", "accountant", "member", "public"), order=20)

DEFAULT_MONTHS = 12


def support_contact() -> dict[str, Any]:
    """Where to ask for a plan over 1000 users: the support request form once it exists, else phone and email."""
    url = url_for("support.request_new") if "support.request_new" in current_app.view_functions else None
    return {"url": url, "phone": current_app.config["SUPPORT_PHONE"], "email": current_app.config["SUPPORT_EMAIL"]}


# --- /plans -----------------------------------------------------------------------------------------------


@bp.route("/plans")
@public
def plans() -> Any:
    raw_months = request.args.get("months")
    months = parse_months(raw_months) or DEFAULT_MONTHS
    page = plans_page(
        get_db(),
        current_membership() if current_user.is_authenticated else None,
        months=months,
        suggested_code=(request.args.get("suggested") or "").strip()[:64],
        checkout_url=lambda plan: url_for("billing.checkout", plan=plan.code, months=months),
        now=utcnow(),
    )
    return render_template(
        "billing/plans.html",
        **page,
        bad_months=raw_months is not None and parse_months(raw_months) is None,
        support=support_contact(),
    )


# --- /checkout --------------------------------------------------------------------------------------------


def _checkout_limit_per_account() -> str:
    return current_app.config["CHECKOUT_LIMIT_PER_ACCOUNT"]


def _checkout_limit_per_ip() -> str:
    return current_app.config["CHECKOUT_LIMIT_PER_IP"]


def _account_key() -> str:
    # The limit runs after roles_required, so there is an account; the address is only a fallback.
    account = current_account()
    return f"account:{account.id}" if account is not None else f"address:{get_remote_address()}"


def _checkout_breached(limit: RequestLimit) -> Any:
    """Over a checkout limit the person sees the checkout page with the wait, not a bare 429.

    Each attempt creates an order and may issue an invoice or start a provider payment, which costs the vendor."""
    minutes = max(1, math.ceil((limit.reset_at - time.time()) / 60))
    text = (
        "Слишком много попыток оформить заказ. "
        f"Попробуйте через {minutes_ru(minutes)} или обратитесь в поддержку: {current_app.config['SUPPORT_PHONE']}."
    )
    return make_response(_checkout(throttled=text))


@bp.route("/checkout", methods=["GET", "POST"])
@roles_required("owner", "accountant")
@limiter.limit(_checkout_limit_per_account, key_func=_account_key, methods=["POST"], on_breach=_checkout_breached)
@limiter.limit(_checkout_limit_per_ip, methods=["POST"], on_breach=_checkout_breached)
def checkout() -> Any:
    return _checkout()


def _checkout(throttled: str | None = None) -> Any:
    """The checkout page; `throttled` (the limit's message) shows it without acting on the form."""
    db = get_db()
    account = require_account()
    membership = current_membership()
    assert membership is not None
    source = request.form if request.method == "POST" else request.args
    now = utcnow()
    try:
        req = open_checkout(db, account.id, membership.role, source, now)
    except Refused as exc:
        abort(exc.status, exc.message)
    form = CheckoutForm()
    form.payer_type.choices = [(o.method, o.title) for o in req.options]
    if throttled:
        return _render_checkout(db, account, membership.role, req, form, now, throttled, 429)
    if request.method == "GET":
        _fill_new_form(form, req)
        return _render_checkout(db, account, membership.role, req, form, now, None, 200)
    return _submit_checkout(db, account, membership.role, req, form, now)


def _fill_new_form(form: CheckoutForm, req: CheckoutRequest) -> None:
    form.plan.data = req.plan.code
    form.months.data = str(req.months)
    form.idempotency_key.data = secrets.token_urlsafe(24)
    form.shown_amount.data = str(req.purchase.amount)
    if len(req.options) == 1:
        form.payer_type.data = req.options[0].method


def _submit_checkout(db: Any, account: Any, role: str, req: CheckoutRequest, form: CheckoutForm, now: Any) -> Any:
    """A submitted checkout: the order placed and its payment started, or the page again with what is wrong."""
    valid = form.validate_on_submit()
    try:
        verdict = check_submission(
            db, account.id, role, req, valid=valid, shown_amount=form.shown_amount.data, method=form.payer_type.data
        )
        if verdict.ok:
            outcome = place_order(
                db,
                actor=_actor(),
                account_id=account.id,
                req=req,
                method=form.payer_type.data,
                chosen=verdict.option,
                license_version=current_app.config["LICENSE_VERSION"],
                idempotency_key=form.idempotency_key.data,
                now=now,
                defer_days=current_app.config["SCHEDULED_PAYMENT_DAYS"],
            )
            return _follow(outcome)
    except Refused as exc:
        abort(exc.status, exc.message)
    if verdict.amount_changed:
        form.shown_amount.data = str(req.purchase.amount)
    return _render_checkout(db, account, role, req, form, now, verdict.problem, verdict.status)


def _render_checkout(
    db: Any, account: Any, role: str, req: CheckoutRequest, form: CheckoutForm, now: Any, problem: Any, status: int
) -> Any:
    context = checkout_page(db, account, role, req, now, current_app.config)
    return render_template("billing/checkout.html", form=form, problem=problem, **context), status


@bp.route("/orders/<int:order_id>/cancel", methods=["POST"])
@roles_required("owner", "accountant")
def order_cancel(order_id: int) -> Any:
    db = get_db()
    account = require_account()
    if get_order(db, account.id, order_id) is None:
        abort(404)
    try:
        canceled = cancel_order(
            db,
            order_id,
            actor=current_user._get_current_object(),  # type: ignore[attr-defined]
            reason="Отменён в личном кабинете",
            now=utcnow(),
            account_id=account.id,
        )
        db.commit()
    except PurchaseError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("index"))
    flash(f"Заказ № {order_id} отменён." if canceled else f"Заказ № {order_id} уже закрыт.", "success")
    return redirect(url_for("index"))


# --- a scheduled change, cancelled before it starts ---------------------------------------------------------


def _scheduled_or_404(db: Any, account_id: int, period_id: int, now: Any) -> PeriodInfo:
    period = get_scheduled_period(db, account_id, period_id, now)
    if period is None:
        abort(404, "Запланированный период не найден: он уже начался, отменён или относится к другой компании.")
    return period


@bp.route("/plans/scheduled/<int:period_id>/cancel")
@roles_required("owner", "accountant")
def scheduled_cancel(period_id: int) -> Any:
    """The consequence stated first (what is paid goes to the balance); the owner confirms, the accountant is told who
    can."""
    db = get_db()
    account = require_account()
    membership = current_membership()
    now = utcnow()
    period = _scheduled_or_404(db, account.id, period_id, now)
    state = get_subscription_state(db, account.id, now)
    return render_template(
        "billing/scheduled_cancel.html",
        period=period,
        paid=order_allocated(db, period.order_id) if period.order_id is not None else 0,
        can_cancel=membership is not None and membership.role == Role.OWNER.value,
        state=state,
        change_plans=change_plans(db, account.id, state, period),
        periods=PERIODS,
    )


@bp.route("/plans/scheduled/<int:period_id>/cancel", methods=["POST"])
@roles_required("owner")
def scheduled_cancel_confirm(period_id: int) -> Any:
    """The owner's confirmation: the period never begins, its money goes to the balance."""
    db = get_db()
    account = require_account()
    now = utcnow()
    period = _scheduled_or_404(db, account.id, period_id, now)
    if not EmptyForm().validate_on_submit():
        abort(400, "Форма устарела. Откройте страницу ещё раз.")
    try:
        outcome = cancel_scheduled_change(
            db, account_id=account.id, period=period, actor=_actor(), now=now, form=request.form
        )
    except Refused as exc:
        abort(exc.status, exc.message)
    return _follow(outcome)


def _actor() -> Any:
    return current_user._get_current_object()  # type: ignore[attr-defined]


def _follow(outcome: Outcome) -> Any:
    """A service's outcome as the person sees it: the flash, then the next page."""
    if outcome.notice is not None:
        flash(outcome.notice, outcome.category)
    if outcome.url is not None:
        return redirect(outcome.url)
    if outcome.plan_code is not None:
        return redirect(url_for("billing.checkout", plan=outcome.plan_code, months=outcome.months))
    return redirect(url_for("index"))


# --- /license ---------------------------------------------------------------------------------------------


@bp.route("/license")
@public
def license() -> Any:
    return _render_license(current_app.config["LICENSE_VERSION"])


@bp.route("/license/<version>")
@public
def license_version(version: str) -> Any:
    return _render_license(version)


def _render_license(version: str) -> Any:
    doc = get_license(version)
    if doc is None:
        abort(404)
    current = current_app.config["LICENSE_VERSION"]
    return render_template(
        "billing/license.html",
        doc=doc,
        sections=doc.render(seller_context(current_app.config)),
        is_current=version == current,
        current=current,
        versions=sorted(LICENSE_VERSIONS.values(), key=lambda v: v.published_on, reverse=True),
    )


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(
        storage=format_storage,
        months_ru=months_ru,
        users_ru=users_ru,
        users_upto_ru=users_upto_ru,
        users_word=users_word,
        days_ru=days_ru,
    )
