"""Starting a card or СБП payment for an order: one attempt per try, created at the provider with a stable key."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.audit import record_audit
from portal.billing.models import Order, OrderStatus
from portal.billing.subscriptions import PurchaseError
from portal.payments import autopay, ledger
from portal.payments.models import Payment, PaymentStatus
from portal.payments.providers.base import PaymentProvider, ProviderError, ProviderUnavailable
from portal.payments.service import _Due, customer_for, payment_dict
from portal.timeutil import msk_date

log = logging.getLogger(__name__)

# YooKassa allows at most 64 characters in an idempotence key.
MAX_PROVIDER_KEY = 64


def provider_key(order_key: str, attempt: int) -> str:
    """The Idempotence-Key of the n-th payment attempt for an order: the order's own key for the first one,
    so pressing Pay twice reaches the same provider payment; a fresh, stable key after a declined attempt."""
    if attempt == 1 and len(order_key) <= MAX_PROVIDER_KEY:
        return order_key
    digest = hashlib.sha256(f"{order_key}:{attempt}".encode()).hexdigest()[:40]
    return f"pay-{attempt}-{digest}"


def latest_payment(db: Session, order_id: int) -> Payment | None:
    return db.scalars(
        sa.select(Payment)
        .where(Payment.order_id == order_id)
        .order_by(Payment.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    ).first()


def open_attempt(db: Session, order_id: int, provider_name: str, *, sbp: bool) -> Payment | None:
    """The order's latest pending attempt at this provider that is (or is not) an СБП one."""
    kind = Payment.method == "sbp" if sbp else sa.or_(Payment.method.is_(None), Payment.method != "sbp")
    return db.scalars(
        sa.select(Payment)
        .where(
            Payment.order_id == order_id,
            Payment.provider == provider_name,
            Payment.status == PaymentStatus.PENDING.value,
            kind,
        )
        .order_by(Payment.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    ).first()


def new_attempt(
    db: Session, order: Order, provider_name: str, key: str, now: datetime, *, actor: Any = None, method: str | None
) -> Payment:
    """A pending provider attempt for what the order still needs (the balance has paid its part), added to the
    session; the caller commits it before calling the provider, so no provider payment is made without its row."""
    payment = Payment(
        provider=provider_name,
        idempotence_key=key,
        order_id=order.id,
        account_id=order.account_id,
        created_by_user_id=actor.id if actor is not None else None,
        amount=ledger.order_due(db, order),
        currency="RUB",
        method=method,
        status=PaymentStatus.PENDING.value,
        created_at=now,
        updated_at=now,
    )
    db.add(payment)
    return payment


def _attempt_for(
    db: Session, order: Order, actor: Any, provider: PaymentProvider, now: datetime, method: str | None = None
) -> Payment:
    """The payment attempt to use for this order: the open one, or a new one if the last was declined.

    `method` "sbp" asks for an СБП attempt (a QR code); an open attempt of the other kind is left to its payer: if
    both are paid, the second payment finds the order paid and goes to the balance, flagged (the ledger's rule)."""
    for _ in range(3):
        last = latest_payment(db, order.id)
        # An autopayment's charge is never reused as a hosted payment: the payer paying another way gets a new one.
        reusable = last is not None and not last.is_autopay_charge
        if reusable and last.provider == provider.name and last.status != PaymentStatus.CANCELED:
            if last.status != PaymentStatus.PENDING or (last.method == "sbp") == (method == "sbp"):
                return last
            # The payer switched between card and СБП: their earlier open attempt of this kind, if there is one.
            earlier = open_attempt(db, order.id, provider.name, sbp=method == "sbp")
            if earlier is not None:
                return earlier
        attempts = db.scalar(sa.select(sa.func.count()).select_from(Payment).where(Payment.order_id == order.id))
        # "sbp": the attempt asks the provider for a QR code
        payment = new_attempt(
            db,
            order,
            provider.name,
            provider_key(order.idempotency_key, (attempts or 0) + 1),
            now,
            actor=actor,
            method=method,
        )
        try:
            db.commit()
        except IntegrityError:
            db.rollback()  # the same Pay pressed twice at once: the other request's attempt is the one
            continue
        return payment
    raise RuntimeError(f"order {order.id}: could not settle on a payment attempt")


def start_card_payment(
    db: Session,
    order: Order,
    actor: Any,
    *,
    provider: PaymentProvider,
    return_url: str,
    now: datetime,
    method: str | None = None,
) -> tuple[Payment, str | None]:
    """Create (or reuse) the provider payment of a pending order: (payment, confirmation URL or None).

    None means the provider did not answer: the attempt is kept, and pressing Pay again (or `billing tick`)
    repeats the request with the same idempotence key, which reaches the same provider payment if there is one.
    Commits: the attempt is stored before the provider is called, so no provider payment is ever made without it.
    """
    if order.status != OrderStatus.PENDING or ledger.order_due(db, order) <= 0:
        # Nothing is left to pay: a closed order, or one the balance has covered — never a payment of nothing.
        raise PurchaseError("Этот заказ уже не ждёт оплаты: выберите тариф заново.")
    payment = _attempt_for(db, order, actor, provider, now, method)
    if payment.status != PaymentStatus.PENDING:
        return payment, None
    if payment.confirmation_url:
        return payment, payment.confirmation_url
    return payment, create_at_provider(db, payment, order, actor, provider, return_url, now)


def create_at_provider(
    db: Session,
    payment: Payment,
    order: Order,
    actor: Any,
    provider: PaymentProvider,
    return_url: str,
    now: datetime,
) -> str | None:
    customer = customer_for(db, order, actor)
    # The owner ticked «Продлевать автоматически» for this order: the provider keeps the card for renewals.
    save = {"save_payment_method": True} if autopay.wants_saving(db, order.id) else {}
    db.commit()  # no transaction (nor pooled connection) is held while the provider is called
    try:
        # An СБП attempt gets a QR code's data instead of a page to send the payer to (kept in the same column).
        if payment.method == "sbp":
            provider_payment_id, url = provider.create_sbp_payment(  # type: ignore[attr-defined]
                _Due(order, payment.amount), return_url, payment.idempotence_key, customer, **save
            )
        else:
            provider_payment_id, url = provider.create_payment(
                _Due(order, payment.amount), return_url, payment.idempotence_key, customer, **save
            )
    except ProviderUnavailable as exc:
        log.warning("payment %s (order %s): %s", payment.id, order.id, exc.message)
        return None
    except ProviderError as exc:
        # The provider refused the request itself: repeating it will not help, so the attempt is closed.
        log.error("payment %s (order %s) refused by %s: %s", payment.id, order.id, provider.name, exc.message)
        db.execute(
            sa.update(Payment)
            .where(Payment.id == payment.id, Payment.provider_payment_id.is_(None))
            .values(status=PaymentStatus.CANCELED.value, status_reason="provider_rejected", status_detail=exc.message)
        )
        db.commit()
        raise
    row = db.scalars(
        sa.select(Payment).where(Payment.id == payment.id).with_for_update().execution_options(populate_existing=True)
    ).one()
    first_time = row.provider_payment_id is None
    row.provider_payment_id = provider_payment_id
    row.confirmation_url = url
    row.updated_at = now
    if first_time:
        record_audit(
            db,
            actor=actor,
            account=order.account_id,
            action="payment.started",
            after=payment_dict(row),
        )
    try:
        db.commit()
    except IntegrityError:
        # The provider payment is already on record: its notification arrived first and was filed against the
        # order. That row is the payment; this attempt is closed.
        db.rollback()
        db.execute(
            sa.update(Payment)
            .where(Payment.id == payment.id, Payment.provider_payment_id.is_(None))
            .values(status=PaymentStatus.CANCELED.value, status_reason="superseded", updated_at=now)
        )
        db.commit()
        log.warning("payment %s: provider payment %s is already on record", payment.id, provider_payment_id)
        return None
    return url


def return_url(base_url: str, order_id: int) -> str:
    """Where the provider sends the payer back: built from BASE_URL, never from the request's Host header."""
    return base_url.rstrip("/") + f"/payments/return/{order_id}"


def settle_opened_card_orders(db: Session, *, now: datetime, config: Mapping[str, Any]) -> list[str]:
    """`billing tick`: a smaller plan scheduled unpaid, whose card payment the tick has just opened, is paid from the
    company's balance first, as checkout would (money from a cancelled period changed for it is there). Commits."""
    ids = list(
        db.scalars(
            sa.select(Order.id)
            .where(
                Order.status == OrderStatus.PENDING,
                Order.payer_type == "card",
                Order.opens_on.is_not(None),
                Order.opens_on >= msk_date(now) - timedelta(days=1),
            )
            .order_by(Order.id)
        )
    )
    done = []
    for order_id in ids:
        order = db.get(Order, order_id)
        if order is None or ledger.account_balance(db, order.account_id) <= 0:
            continue
        if ledger.settle_from_balance(db, order, now=now, config=config, actor=None):
            done.append(f"заказ № {order.id} оплачен с баланса компании")
        db.commit()
    return done
