"""Payment pages: the return page with its status check, the payment history, and the providers' webhooks."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Blueprint, Flask, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import Session

from portal.accounts.access import current_membership, public, require_account, roles_required
from portal.accounts.forms import EmptyForm
from portal.billing.models import Order, OrderStatus
from portal.billing.orders import get_order
from portal.billing.subscriptions import get_subscription_state
from portal.db import get_db, utcnow
from portal.documents.invoices import record_card_order
from portal.documents.qr import qr_svg_data_uri
from portal.extensions import csrf
from portal.money import format_rub
from portal.nav import register_nav
from portal.payments import attempts, autopay, ledger, notifications, recheck, refunds, reports, service
from portal.payments.providers import PROVIDER_NAMES, get_provider
from portal.payments.providers.base import NotificationRejected, ProviderError, ProviderUnavailable, reason_text
from portal.timeutil import msk_date

log = logging.getLogger(__name__)

bp = Blueprint("payments", __name__, url_prefix="/payments")

register_nav("payments.payment_list", "Платежи", ("owner", "accountant"), order=45)

# A company may pay with its corporate card too: the option must not make it call itself an individual.
CARD_TITLE = "Картой или электронными деньгами — личной или корпоративной картой"
ABANDONED_AFTER = timedelta(minutes=30)
# A YooKassa notification is about a kilobyte; anything near this is not one.
WEBHOOK_MAX_BYTES = 64 * 1024


def _paying_as_company() -> bool:
    """The checkout's «Оплачиваю как компания — нужен УПД» box (a retry finds the record the first press made)."""
    return request.method == "POST" and request.form.get("as_company") in ("y", "on", "1", "true")


def _autopay_if_ticked(db: Session, order: Order, actor: Any) -> None:
    """The owner ticked «Продлевать автоматически» (card or СБП): the consent waits for the payment that saves."""
    membership = current_membership()
    owner = membership is not None and membership.role == "owner"
    if owner and request.method == "POST" and request.form.get("autopay") in ("y", "on", "1", "true"):
        autopay.request_consent(db, order, actor, config=current_app.config, now=utcnow())


def checkout_handler(db: Session, order: Order, actor: Any) -> str:
    """Billing's checkout calls this for a card order: where to send the payer (the provider's page).

    A company that ticked «нужен УПД» gets its order's invoice record first, so whatever pays the order (the balance,
    the card) forms the УПД the same way a transfer does, and the receipt names the company."""
    if _paid_from_balance(db, order, actor):
        return url_for("index")
    url = _start_at_provider(db, order, actor)
    # No URL: the provider did not answer (or the payment is already settled); the return page says what to do.
    return url or url_for("payments.payment_return", order_id=order.id)


def _paid_from_balance(db: Session, order: Order, actor: Any) -> bool:
    """What a card or СБП choice does before the provider: the company's invoice record, the autopayment consent,
    then the balance — True (and said) when the balance paid the whole order."""
    if _paying_as_company():
        record_card_order(db, order, actor=actor, now=utcnow(), config=current_app.config)
    _autopay_if_ticked(db, order, actor)
    if ledger.settle_from_balance(db, order, now=utcnow(), config=current_app.config, actor=actor):
        flash(f"Заказ оплачен с баланса: {format_rub(order.amount)}.", "success")
        return True
    return False


def _start_at_provider(db: Session, order: Order, actor: Any, method: str | None = None) -> str | None:
    """The order's payment attempt at the provider (`method` "sbp" for a QR code): the payer's URL, if it answered."""
    _payment, url = attempts.start_card_payment(
        db,
        order,
        actor,
        provider=get_provider(current_app),
        return_url=attempts.return_url(current_app.config["BASE_URL"], order.id),
        now=utcnow(),
        method=method,
    )
    return url


def settle_opened_card_orders(db: Session, now: Any) -> list[str]:
    """`billing tick`: scheduled card orders whose payment the tick has just opened are paid from the balance first."""
    return attempts.settle_opened_card_orders(db, now=now, config=current_app.config)


# --- СБП: a QR code the payer scans with the bank's app ------------------------------------------------------

SBP_TITLE = "СБП — по QR-коду в приложении банка"


def sbp_checkout_handler(db: Session, order: Order, actor: Any) -> str:
    """The checkout's СБП choice: a card order (the same ledger path, the same УПД for a company) whose payment
    asks the provider for a QR code; the payer waits on the portal's page that shows it."""
    if _paid_from_balance(db, order, actor):
        return url_for("index")
    _start_at_provider(db, order, actor, method="sbp")
    # With or without the QR yet (the provider may not have answered), the waiting page says what to do.
    return url_for("payments.sbp_show", order_id=order.id)


# --- the return page --------------------------------------------------------------------------------------------


def _load_order(order_id: int) -> Order:
    account = require_account()
    order = get_order(get_db(), account.id, order_id)
    if order is None or order.payer_type != "card":
        abort(404)
    return order


def _refreshed_state(order_id: int) -> tuple[Order, recheck.PaymentState]:
    db = get_db()
    order = _load_order(order_id)
    provider = get_provider(current_app)
    payment = recheck.refresh_order_payment(db, order, provider=provider, now=utcnow())
    db.refresh(order)
    return order, recheck.payment_state(order, payment)


@bp.route("/return/<int:order_id>")
@roles_required("owner", "accountant")
def payment_return(order_id: int) -> Any:
    order, state = _refreshed_state(order_id)
    sbp = state.payment is not None and state.payment.method == "sbp" and state.payment.confirmation_url
    if state.code == "pending" and sbp:
        return redirect(url_for("payments.sbp_show", order_id=order.id))  # the QR is still the way to pay
    db = get_db()
    now = utcnow()
    subscription = get_subscription_state(db, order.account_id, now) if state.code == "paid" else None
    membership = current_membership()
    return render_template(
        "payments/payment_return.html",
        order=order,
        state=state,
        subscription=subscription,
        starts_later=order.starts_on > msk_date(now),
        reason=reason_text(state.payment.status_reason) if state.code == "declined" and state.payment else None,
        can_pay=membership is not None and membership.role == "owner",
        checkout_url=_checkout_url(order),
    )


@bp.route("/status/<int:order_id>")
@roles_required("owner", "accountant")
def payment_status(order_id: int) -> Any:
    """The return page's script polls this while the payment is processed."""
    order, state = _refreshed_state(order_id)
    resp = jsonify(
        {
            "order_id": order.id,
            "order_status": order.status,
            "state": state.code,
            "final": state.is_final,
            "payment_status": state.payment.status if state.payment else None,
        }
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/pay/<int:order_id>", methods=["POST"])
@roles_required("owner")
def payment_retry(order_id: int) -> Any:
    """«Попробовать ещё раз» after the provider did not answer: the same order, the same idempotence key."""
    order = _load_order(order_id)
    db = get_db()
    if order.status != OrderStatus.PENDING:
        return redirect(url_for("payments.payment_return", order_id=order.id))
    last = attempts.latest_payment(db, order.id)
    handler = sbp_checkout_handler if last is not None and last.method == "sbp" else checkout_handler
    try:
        url = handler(db, order, current_user._get_current_object())  # type: ignore[attr-defined]
    except ProviderError as exc:
        db.rollback()
        log.error("payment retry for order %s failed: %s", order.id, exc)
        abort(400, f"Платёжная система отклонила платёж: {exc.message}")
    return redirect(url)


@bp.route("/sbp/<int:order_id>")
@roles_required("owner", "accountant")
def sbp_show(order_id: int) -> Any:
    """The СБП waiting page: the QR code, a link that opens the bank's app on a phone, and the payment's status
    (a script polls it; without one, «Проверить оплату» reloads). Anything but a pending СБП payment is the
    return page's to say."""
    order, state = _refreshed_state(order_id)
    payment = state.payment
    if state.code == "pending" and payment is not None and payment.method != "sbp":
        # The payer went to the card page and came back to СБП: their open СБП attempt, re-read at the provider.
        payment = recheck.refresh_sbp_attempt(get_db(), order, provider=get_provider(current_app), now=utcnow())
        if order.status == OrderStatus.PAID:
            return redirect(url_for("payments.payment_return", order_id=order.id))
    if state.code != "pending" or payment is None or payment.method != "sbp" or not payment.confirmation_url:
        return redirect(url_for("payments.payment_return", order_id=order.id))
    return render_template(
        "payments/sbp_show.html",
        order=order,
        state=state,
        payment=payment,
        qr_uri=qr_svg_data_uri(payment.confirmation_url, scale=5),
    )


def _checkout_url(order: Order) -> str | None:
    if "billing.checkout" not in current_app.view_functions:
        return None
    return url_for("billing.checkout", plan=order.plan_code, months=order.months)


# --- history ----------------------------------------------------------------------------------------------------


@bp.route("")
@roles_required("owner", "accountant")
def payment_list() -> Any:
    db = get_db()
    account = require_account()
    return render_template(
        "payments/payment_list.html",
        rows=service.list_payments(db, account.id),
        reason_text=reason_text,
        # A card attempt nobody finished within this time was abandoned: said so, with a way to pay again.
        abandoned_before=utcnow() - ABANDONED_AFTER,
        can_retry=current_membership() is not None and current_membership().role == "owner",  # type: ignore[union-attr]
        totals=ledger.account_totals(db, account.id),
        entries=reports.history(db, account.id),
        attention=ledger.list_attention(db, account.id),
        refunds=refunds.list_refunds(db, account.id),
        refund_form=EmptyForm(),
        autopay=autopay.get_autopay(db, account.id),
        saved_methods=autopay.list_methods(db, account.id),
    )


@bp.route("/autopay/cancel", methods=["POST"])
@roles_required("owner")
def autopay_cancel() -> Any:
    """One click (the button's confirm states the consequence): nothing more is charged."""
    return _autopay_change(remove=False)


@bp.route("/autopay/method/remove", methods=["POST"])
@roles_required("owner")
def autopay_method_remove() -> Any:
    return _autopay_change(remove=True)


def _autopay_change(*, remove: bool) -> Any:
    db = get_db()
    account = require_account()
    if not EmptyForm().validate_on_submit():
        abort(400, "Форма устарела. Откройте страницу «Платежи» заново.")
    actor = current_user._get_current_object()  # type: ignore[attr-defined]
    now = utcnow()
    if remove:
        changed = autopay.remove_method(db, account.id, actor=actor, now=now)
        text = "Карта удалена, автоплатёж отключён: ничего не будет списано." if changed else "Сохранённой карты нет."
    else:
        changed = autopay.cancel_autopay(db, account.id, actor=actor, now=now, reason="Отключён владельцем.")
        text = (
            "Автоплатёж отключён: ничего не будет списано. Продлить тариф можно вручную."
            if changed
            else "Автоплатёж уже был отключён."
        )
    db.commit()
    flash(text, "success" if changed else "info")
    return redirect(url_for("payments.payment_list") + "#autopay")


@bp.route("/refund", methods=["POST"])
@roles_required("owner")
def refund_request() -> Any:
    """The owner asks for the balance back; staff return card money to the card and bank money by transfer."""
    db = get_db()
    account = require_account()
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        made = refunds.request_refund(db, account.id, actor=current_user._get_current_object(), now=utcnow())  # type: ignore[attr-defined]
        db.commit()
    except ledger.LedgerError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("payments.payment_list"))
    total = sum(r.amount for r in made)
    flash(
        f"Запрос на возврат {format_rub(total)} принят: деньги с карты вернутся на карту, переведённые по счёту — "
        "переводом на счёт компании. Обычно это занимает до 10 рабочих дней.",
        "success",
    )
    return redirect(url_for("payments.payment_list"))


# --- webhooks ---------------------------------------------------------------------------------------------------


def _json_error(code: int, message: str, **extra: Any) -> Any:
    return jsonify({"error": message, **extra}), code


@bp.route("/webhook/<provider_name>", methods=["POST"])
@public
def webhook(provider_name: str) -> Any:
    """A provider's notification: authenticated by the provider's rule, then only a hint which payment to re-read."""
    remote = request.remote_addr
    if provider_name not in PROVIDER_NAMES or not _accepts(provider_name):
        log.warning("webhook %s from %s: provider not enabled", provider_name, remote)
        return _json_error(404, "Этот приём уведомлений не включён.")
    body = _webhook_body(provider_name, remote)
    if body is None:
        return _json_error(413, "Уведомление слишком большое.")
    provider = get_provider(current_app, provider_name)
    try:
        event = provider.parse_notification(body, request.headers, remote)
    except NotificationRejected as exc:
        log.warning("webhook %s from %s rejected (%s): %s", provider_name, remote, exc.status_code, exc.message)
        return _json_error(exc.status_code, exc.message)
    # Every authentic notification is acknowledged with 200 once it is kept: an answer other than 200 makes the
    # provider deliver it again for days, and nothing here would change on a second delivery.
    try:
        answer = notifications.receive_notification(get_db(), provider, event, remote_addr=remote, now=utcnow())
    except ProviderUnavailable as exc:
        return _json_error(503, exc.message)
    return jsonify(answer)


csrf.exempt(webhook)


def _webhook_body(provider_name: str, remote: str | None) -> bytes | None:
    """The notification's body, or None when it is too large to be one (a 413)."""
    if (request.content_length or 0) > WEBHOOK_MAX_BYTES:
        log.warning("webhook %s from %s: body of %s bytes refused", provider_name, remote, request.content_length)
        return None
    body = request.stream.read(WEBHOOK_MAX_BYTES + 1)
    if len(body) > WEBHOOK_MAX_BYTES:
        log.warning("webhook %s from %s: body over %s bytes refused", provider_name, remote, WEBHOOK_MAX_BYTES)
        return None
    return body


def _accepts(provider_name: str) -> bool:
    cfg = current_app.config
    if provider_name == "sandbox":
        # The sandbox's notifications would be a way to "pay" without money: only where it is the provider.
        return cfg["PAYMENT_PROVIDER"] == "sandbox"
    return bool(cfg.get("YOOKASSA_SHOP_ID") and cfg.get("YOOKASSA_SECRET_KEY"))


def init_app(app: Flask) -> None:
    if app.config["PAYMENT_PROVIDER"] == "sandbox":
        from portal.payments.sandbox_views import bp as sandbox_bp

        app.register_blueprint(sandbox_bp)
    app.jinja_env.globals.setdefault("payment_reason_text", reason_text)
