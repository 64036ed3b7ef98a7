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
from portal.billing.catalog import MAX_SELF_SERVICE_SEATS, PERIODS, Plan
from portal.billing.checkout import (
    PAYER_TYPES_BY_ROLE,
    CheckoutOption,
    get_checkout_option,
    no_options_text,
    options_for_role,
)
from portal.billing.custom_plans import get_plan_for_account
from portal.billing.display import (
    allowed_months_ru,
    days_ru,
    format_storage,
    months_ru,
    users_ru,
    users_upto_ru,
    users_word,
)
from portal.billing.forms import CheckoutForm
from portal.billing.license import LICENSE_VERSIONS, get_license, seller_context
from portal.billing.orders import (
    cancel_order,
    cancel_scheduled_period,
    change_choice,
    change_plans,
    create_order,
    get_order,
    get_scheduled_period,
    payment_opens_on,
    scheduled_canceled_notice,
    scheduled_order_notice,
)
from portal.billing.plan_cards import plan_cards
from portal.billing.purchases import Purchase, price_purchase
from portal.billing.subscriptions import PeriodInfo, PurchaseError, get_subscription_state, get_usage, list_owners
from portal.db import get_db, utcnow
from portal.documents.service import get_requisites
from portal.extensions import limiter
from portal.money import format_rub
from portal.nav import register_nav
from portal.payments.autopay import AUTOPAY_TERMS_VERSION
from portal.payments.autopay import offered_for as autopay_offered
from portal.payments.autopay import terms_text as autopay_terms_text
from portal.payments.ledger import account_balance, order_allocated
from portal.payments.offer import offer_for_purchase
from portal.timeutil import msk_date
from portal.wording import minutes_ru

log = logging.getLogger(__name__)

bp = Blueprint("billing", __name__)

register_nav("billing.plans", "Тарифы", ("owner", "accountant", "member", "public"), order=20)

DEFAULT_MONTHS = 12


def parse_months(raw: str | None) -> int | None:
    """An offered period from a query or form value; None for anything else ("3", "abc", "6.0", missing)."""
    raw = (raw or "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 3:
        return None
    months = int(raw)
    return months if months in PERIODS else None


def months_error(raw: str | None) -> str:
    shown = (raw or "").strip()[:20]
    what = f"Период «{shown}» не предлагается" if shown else "Период оплаты не указан"
    return f"{what}. Можно оплатить {allowed_months_ru()}."


def support_contact() -> dict[str, Any]:
    """Where to ask for a plan over 1000 users: the support request form once it exists, else phone and email."""
    url = url_for("support.request_new") if "support.request_new" in current_app.view_functions else None
    return {"url": url, "phone": current_app.config["SUPPORT_PHONE"], "email": current_app.config["SUPPORT_EMAIL"]}


# --- /plans -----------------------------------------------------------------------------------------------


@bp.route("/plans")
@public
def plans() -> Any:
    db = get_db()
    raw_months = request.args.get("months")
    months = parse_months(raw_months) or DEFAULT_MONTHS
    membership = current_membership() if current_user.is_authenticated else None
    account = membership.account if membership else None
    role = membership.role if membership else None
    state = get_subscription_state(db, account.id, utcnow()) if account is not None else None
    usage = get_usage(db, account) if account is not None else None
    cards = plan_cards(
        db,
        account.id if account else None,
        months=months,
        state=state,
        usage=usage,
        balance=account_balance(db, account.id) if account is not None else 0,
        suggested_code=(request.args.get("suggested") or "").strip()[:64],
        can_buy=role in PAYER_TYPES_BY_ROLE or membership is None,  # visitors are sent to sign in at checkout
        checkout_url=lambda plan: url_for("billing.checkout", plan=plan.code, months=months),
    )
    return render_template(
        "billing/plans.html",
        cards=cards,
        months=months,
        periods=PERIODS,
        bad_months=raw_months is not None and parse_months(raw_months) is None,
        state=state,
        usage=usage,
        account=account,
        role=role,
        support=support_contact(),
        max_seats=MAX_SELF_SERVICE_SEATS,
        owners=list_owners(db, account.id) if account is not None and role == "member" else [],
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
    plan_code = (source.get("plan") or "").strip()
    plan = get_plan_for_account(db, account.id, plan_code) if plan_code else None
    if plan is None:
        shown = plan_code[:64] or "не указан"
        abort(400, f"Тариф «{shown}» не найден. Выберите тариф на странице «Тарифы».")
    months = parse_months(source.get("months"))
    if months is None:
        abort(400, months_error(source.get("months")))
    now = utcnow()
    try:
        purchase = price_purchase(db, account.id, plan, months, now, topup_ids=_topup_choice(source))
    except PurchaseError as exc:
        abort(400, str(exc))

    offer = offer_for_purchase(db, account.id, purchase)
    options = options_for_role(membership.role)
    form = CheckoutForm()
    form.payer_type.choices = [(o.payer_type, o.title) for o in options]
    license_version = current_app.config["LICENSE_VERSION"]
    problem = throttled
    status = 429 if throttled else 200
    if throttled:
        pass
    elif request.method == "GET":
        form.plan.data = plan.code
        form.months.data = str(months)
        form.idempotency_key.data = secrets.token_urlsafe(24)
        form.shown_amount.data = str(purchase.amount)
        if len(options) == 1:
            form.payer_type.data = options[0].payer_type
    else:
        if not options:
            abort(400, no_options_text(membership.role))
        if form.validate_on_submit():
            if form.shown_amount.data != str(purchase.amount):
                log.warning(
                    "checkout amount mismatch: account %s plan %s form %r server %s",
                    account.id,
                    plan.code,
                    form.shown_amount.data,
                    purchase.amount,
                )
                problem = (
                    "Сумма к оплате изменилась или форма была изменена. Проверьте заказ ниже "
                    f"(к оплате {format_rub(purchase.amount)}) и подтвердите его ещё раз."
                )
                form.shown_amount.data = str(purchase.amount)
                status = 400
            else:
                option = get_checkout_option(form.payer_type.data)
                refusal = option.precheck(db, account.id) if option is not None and option.precheck else None
                if refusal is None:
                    topups = frozenset(t.period.id for t in purchase.topups)
                    return _place_order(form, account.id, plan, months, license_version, now, topups, option)
                problem = refusal
                status = 409
        else:
            status = 400
    return (
        render_template(
            "billing/checkout.html",
            form=form,
            plan=plan,
            months=months,
            purchase=purchase,
            state=get_subscription_state(db, account.id, now),
            usage=get_usage(db, account),
            options=options,
            no_options_text=no_options_text(membership.role) if not options else None,
            license_version=license_version,
            problem=problem,
            periods=PERIODS,
            offer=offer,
            # A smaller plan months away is scheduled now and paid when its period comes near.
            opens_on=payment_opens_on(purchase, msk_date(now), current_app.config["SCHEDULED_PAYMENT_DAYS"]),
            # A company paying by card may ask for a УПД: offered once its requisites are on file.
            company=get_requisites(db, account.id) if any(o.payer_type == "card" for o in options) else None,
            autopay_terms=_autopay_terms(purchase, options, membership.role),
            autopay_version=AUTOPAY_TERMS_VERSION,
        ),
        status,
    )


def _autopay_terms(purchase: Purchase, options: list[CheckoutOption], role: str) -> str | None:
    """The autopayment terms the owner may agree to with a card payment (None: not offered here)."""
    if role != Role.OWNER.value or not any(o.payer_type == "card" for o in options) or not autopay_offered(purchase):
        return None
    return autopay_terms_text(purchase.plan.code, purchase.months, purchase.quote.total, current_app.config)


def _topup_choice(source: Any) -> frozenset[int] | None:
    """Which prepaid later periods an upgrade raises too: the ticked `topup` boxes once the form (or a link) says
    a choice was made (`topups_choice`), else None — every one, as the page offers them ticked."""
    if not source.get("topups_choice"):
        return None
    return frozenset(int(v) for v in source.getlist("topup") if v.isascii() and v.isdigit() and len(v) < 12)


def _place_order(
    form: CheckoutForm,
    account_id: int,
    plan: Plan,
    months: int,
    license_version: str,
    now: Any,
    topups: frozenset[int] | None = None,
    chosen: CheckoutOption | None = None,
) -> Any:
    db = get_db()
    actor = current_user._get_current_object()  # type: ignore[attr-defined]
    try:
        order = create_order(
            db,
            actor=actor,
            account_id=account_id,
            plan_code=plan.code,
            months=months,
            payer_type=chosen.order_payer_type if chosen is not None else form.payer_type.data,
            license_version=license_version,
            idempotency_key=form.idempotency_key.data,
            now=now,
            topup_ids=topups,
            defer_days=current_app.config["SCHEDULED_PAYMENT_DAYS"],
        )
        db.commit()
    except PurchaseError as exc:
        db.rollback()
        abort(400, str(exc))
    if order.status == "scheduled" and order.opens_on is not None:
        # Nothing is asked for now: the tick opens the payment when the period comes near.
        flash(scheduled_order_notice(order), "success")
        return redirect(url_for("index"))
    if order.status == "paid":
        flash("Этот заказ уже оплачен.", "success")
        return redirect(url_for("index"))
    if order.status != "pending":
        abort(400, "Этот заказ уже закрыт. Откройте страницу оплаты заново, чтобы оформить новый.")
    # The choice made (СБП) when it is a way to pay this order's payer type, else the payer type's own.
    option = chosen if chosen is not None and chosen.order_payer_type == order.payer_type else None
    option = option or get_checkout_option(order.payer_type)
    if option is None:
        abort(400, "Этот способ оплаты сейчас недоступен. Выберите другой.")
    try:
        target = option.handler(db, order, actor)
        db.commit()
    except Exception:
        db.rollback()
        log.exception("checkout handler %s failed for order %s", order.payer_type, order.id)
        flash("Не удалось начать оплату. Заказ сохранён — попробуйте ещё раз через минуту.", "error")
        return redirect(url_for("billing.checkout", plan=plan.code, months=months))
    return redirect(target)


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
    paid = order_allocated(db, period.order_id) if period.order_id is not None else 0
    if not EmptyForm().validate_on_submit():
        abort(400, "Форма устарела. Откройте страницу ещё раз.")
    # «Изменить»: cancel, then straight to checkout of the chosen plan for the same first day. Checked before
    # anything changes, so a bad choice cancels nothing.
    then = None
    if "then_plan" in request.form:
        state = get_subscription_state(db, account.id, now)
        try:
            then_plan = change_choice(db, account.id, state, period, request.form.get("then_plan"))
        except PurchaseError as exc:
            abort(400, str(exc))
        then_months = parse_months(request.form.get("then_months"))
        if then_months is None:
            abort(400, months_error(request.form.get("then_months")))
        then = (then_plan, then_months)
    try:
        cancel_scheduled_period(
            db,
            account_id=account.id,
            period_id=period_id,
            actor=current_user._get_current_object(),  # type: ignore[attr-defined]
            reason="Отменён владельцем до начала периода",
            now=now,
        )
        db.commit()
    except PurchaseError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("index"))
    flash(scheduled_canceled_notice(period, paid, then[0] if then else None), "success")
    if then is not None:
        return redirect(url_for("billing.checkout", plan=then[0].code, months=then[1]))
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
