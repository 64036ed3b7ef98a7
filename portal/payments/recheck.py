"""Re-checking pending payments at the provider: the return page's status check and `billing tick`'s stragglers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from portal.audit import record_audit
from portal.billing.models import Order, OrderStatus
from portal.payments.attempts import create_at_provider, latest_payment, open_attempt, return_url
from portal.payments.models import Payment, PaymentStatus
from portal.payments.providers import PROVIDER_NAMES, get_provider
from portal.payments.providers.base import PaymentProvider, ProviderError, reason_text
from portal.payments.service import payment_dict, process_provider_payment

log = logging.getLogger(__name__)

# YooKassa keeps an idempotence key for 24 hours: past that, repeating a create request would make a new payment.
IDEMPOTENCE_KEY_TTL = timedelta(hours=24)
# The tick re-reads a pending payment at most this often; the return page at most every few seconds.
RECHECK_AFTER = timedelta(minutes=1)
RETURN_PAGE_RECHECK_AFTER = timedelta(seconds=3)
RECHECK_BATCH = 200


@dataclass(frozen=True)
class PaymentState:
    """What the payer should see about an order's payment."""

    code: str  # paid | pending | not_started | declined | flagged | closed
    payment: Payment | None

    @property
    def is_final(self) -> bool:
        return self.code not in ("pending", "not_started")


def payment_state(order: Order, payment: Payment | None) -> PaymentState:
    """What the return page and its status check say about the order's latest payment."""
    if order.status == OrderStatus.PAID:
        return PaymentState("paid", payment)
    if payment is None:
        return PaymentState("closed" if order.status != OrderStatus.PENDING else "not_started", None)
    if payment.status == PaymentStatus.FLAGGED:
        return PaymentState("flagged", payment)
    if payment.status == PaymentStatus.CANCELED:
        return PaymentState("declined", payment)
    if payment.provider_payment_id is None:
        return PaymentState("not_started", payment)
    return PaymentState("pending", payment)


def refresh_order_payment(db: Session, order: Order, *, provider: PaymentProvider, now: datetime) -> Payment | None:
    """The order's latest payment, re-read at the provider if still pending (the return page's status check).

    A provider that does not answer changes nothing: the page keeps saying «обрабатывается».
    """
    payment = latest_payment(db, order.id)
    if (
        payment is None
        or payment.status != PaymentStatus.PENDING
        or payment.provider_payment_id is None
        or payment.provider != provider.name
        or order.status == OrderStatus.PAID
    ):
        return payment
    if payment.checked_at is not None and now - payment.checked_at < RETURN_PAGE_RECHECK_AFTER:
        return payment
    try:
        return process_provider_payment(db, provider, payment.provider_payment_id, now=now, source="return").payment
    except ProviderError as exc:
        log.warning("return page: payment %s not re-read: %s", payment.id, exc)
        db.rollback()
        return latest_payment(db, order.id)


def _claim(db: Session, payment_id: int, now: datetime) -> bool:
    """Mark a payment as being re-checked now; False if another server's tick got there first."""
    cutoff = now - RECHECK_AFTER
    result = db.execute(
        sa.update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.status == PaymentStatus.PENDING.value,
            sa.or_(Payment.checked_at.is_(None), Payment.checked_at < cutoff),
        )
        .values(checked_at=now)
    )
    db.commit()
    return result.rowcount == 1


def recheck_pending(
    db: Session,
    now: datetime,
    *,
    providers: Mapping[str, PaymentProvider] | None = None,
    base_url: str | None = None,
) -> list[str]:
    """`billing tick` hook: settle payments still pending at the provider (a lost notification, a time-out).

    Safe on several servers at once: each payment is claimed by a conditional update before it is re-read.
    Without `providers` / `base_url`, the current Flask app's are used (the tick runs as a CLI command of the app).
    """
    if providers is None:
        providers = _app_providers()
    if base_url is None:
        base_url = current_app.config["BASE_URL"]
    cutoff = now - RECHECK_AFTER
    ids = list(
        db.scalars(
            sa.select(Payment.id)
            .where(
                Payment.status == PaymentStatus.PENDING.value,
                Payment.created_at <= cutoff,
                sa.or_(Payment.checked_at.is_(None), Payment.checked_at < cutoff),
            )
            .order_by(Payment.id)
            .limit(RECHECK_BATCH)
        )
    )
    done: list[str] = []
    for payment_id in ids:
        if not _claim(db, payment_id, now):
            continue
        payment = db.get(Payment, payment_id, populate_existing=True)
        assert payment is not None
        provider = providers.get(payment.provider)
        if provider is None:
            log.warning("payment %s: provider %s is not configured; left pending", payment.id, payment.provider)
            continue
        try:
            line = _recheck_one(db, payment, provider, now, return_url(base_url, payment.order_id))
        except ProviderError as exc:
            db.rollback()
            log.warning("tick: payment %s not re-read: %s", payment_id, exc)
            continue
        if line:
            done.append(line)
    return done


def _recheck_one(db: Session, payment: Payment, provider: PaymentProvider, now: datetime, return_to: str) -> str | None:
    label = f"платёж № {payment.id} по заказу № {payment.order_id}"
    if payment.provider_payment_id is None and payment.is_autopay_charge:
        return None  # an autopayment's charge: autopay repeats it with its own key, never as a hosted payment
    if payment.provider_payment_id is None:
        # The create request timed out. Within the key's lifetime, repeating it with the same key returns the
        # payment the provider made (if it did); later the key would make a new one, so the attempt is closed.
        order = db.get(Order, payment.order_id)
        assert order is not None
        if payment.created_at + IDEMPOTENCE_KEY_TTL <= now or order.status != OrderStatus.PENDING:
            return _close_unanswered(db, payment, now, label)
        url = create_at_provider(db, payment, order, None, provider, return_to, now)
        if url is None:
            return None
        db.refresh(payment)
    assert payment.provider_payment_id is not None
    outcome = process_provider_payment(db, provider, payment.provider_payment_id, now=now, source="tick")
    if outcome.code == "activated":
        return f"{label}: оплата подтверждена, заказ применён"
    if outcome.code == "canceled":
        return f"{label}: не прошёл — {reason_text(outcome.payment.status_reason)}"
    if outcome.code == "flagged":
        return f"{label}: отмечен для поддержки — {outcome.payment.status_detail}"
    return None


def _close_unanswered(db: Session, payment: Payment, now: datetime, label: str) -> str:
    payment = db.scalars(
        sa.select(Payment).where(Payment.id == payment.id).with_for_update().execution_options(populate_existing=True)
    ).one()
    if payment.status != PaymentStatus.PENDING or payment.provider_payment_id is not None:
        db.commit()
        return f"{label}: уже обработан"
    payment.status = PaymentStatus.CANCELED.value
    payment.status_reason = "provider_unavailable"
    payment.updated_at = now
    record_audit(
        db,
        actor=None,
        account=payment.account_id,
        action="payment.canceled",
        before={"status": PaymentStatus.PENDING.value},
        after=payment_dict(payment) | {"source": "tick"},
        reason=reason_text("provider_unavailable"),
    )
    db.commit()
    return f"{label}: платёжная система так и не ответила, попытка закрыта"


def _app_providers() -> dict[str, PaymentProvider]:
    names = {current_app.config["PAYMENT_PROVIDER"]}
    # Payments made through another provider before a switch are still re-read, if that provider is configured.
    if current_app.config.get("YOOKASSA_SHOP_ID") and current_app.config.get("YOOKASSA_SECRET_KEY"):
        names.add("yookassa")
    return {name: get_provider(current_app, name) for name in PROVIDER_NAMES if name in names}


def refresh_sbp_attempt(db: Session, order: Order, *, provider: PaymentProvider, now: datetime) -> Payment | None:
    """The order's open СБП attempt, re-read at the provider (the payer went to the card page and came back to СБП);
    None once it is no longer pending."""
    payment = open_attempt(db, order.id, provider.name, sbp=True)
    if payment is not None and payment.provider_payment_id is not None:
        try:
            payment = process_provider_payment(
                db, provider, payment.provider_payment_id, now=now, source="return"
            ).payment
        except ProviderError as exc:
            db.rollback()
            log.warning("СБП page: payment %s not re-read: %s", payment.id, exc)
        db.refresh(order)
    return payment if payment is not None and payment.status == PaymentStatus.PENDING else None
