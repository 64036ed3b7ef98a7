"""Card and e-money payments: starting one for an order, settling it exactly once, re-checking the stragglers.

Every way the portal learns about a payment (the provider's notification, the payer's return page, `billing tick`)
goes through `process_provider_payment`, which re-reads the payment at the provider, locks the payment row and
applies the order in the same transaction. So the same success seen any number of times, by any number of servers,
activates the subscription once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.accounts.models import Membership, Role, User
from portal.audit import record_audit
from portal.billing import service as billing
from portal.billing.models import Order, OrderStatus
from portal.documents.models import Invoice
from portal.money import format_rub
from portal.payments import ledger
from portal.payments.models import Payment, PaymentNotification, PaymentStatus, ReceiptMethod
from portal.payments.providers.base import (
    CANCELED,
    SUCCEEDED,
    Customer,
    NotificationEvent,
    PaymentInfo,
    PaymentProvider,
    ProviderError,
    ProviderUnavailable,
    reason_text,
)
from portal.timeutil import msk_date

log = logging.getLogger(__name__)

# YooKassa keeps an idempotence key for 24 hours and allows at most 64 characters in it.
IDEMPOTENCE_KEY_TTL = timedelta(hours=24)
MAX_PROVIDER_KEY = 64
# The tick re-reads a pending payment at most this often; the return page at most every few seconds.
RECHECK_AFTER = timedelta(minutes=1)
RETURN_PAGE_RECHECK_AFTER = timedelta(seconds=3)
RECHECK_BATCH = 200

FLAG_AMOUNT = "amount_mismatch"
FLAG_CURRENCY = "currency_mismatch"
FLAG_ORDER = "order_mismatch"
FLAG_ALREADY_PAID = "order_already_paid"
FLAG_NOT_APPLICABLE = "order_not_applicable"
FLAG_TEXTS = {
    FLAG_AMOUNT: "Сумма платежа не совпадает с суммой заказа.",
    FLAG_CURRENCY: "Валюта платежа не совпадает с валютой заказа.",
    FLAG_ORDER: "Платёж относится к другому заказу.",
    FLAG_ALREADY_PAID: "Заказ уже был оплачен другим платежом.",
    FLAG_NOT_APPLICABLE: "Заказ больше нельзя применить: деньги на балансе.",
}


class UnknownPayment(ProviderError):
    """The provider knows the payment but it belongs to no order of this portal."""


@dataclass(frozen=True)
class Outcome:
    """What one look at a payment did: activated, already_settled, pending, canceled or flagged."""

    code: str
    payment: Payment
    upd_id: int | None = None  # a company card payment's УПД, numbered now and formed after the commit

    @property
    def status(self) -> str:
        return self.payment.status


def _reference(provider: str, provider_payment_id: str) -> str:
    return f"{provider}:{provider_payment_id}"


# The УПД's line 5 (НомерПРД) takes at most 30 characters; a YooKassa payment id is a 36-character UUID.
PAYMENT_DOC_NUMBER_MAX = 30


def card_payment_doc(provider_payment_id: str, paid_on: Any, amount: int) -> dict[str, Any]:
    """Line 5 of a company card payment's УПД: the acquirer's payment id (as in its register), dated the payment day.

    A UUID loses its dashes to fit (32 hex digits, the first 30 of them): still unique in the acquirer's register."""
    number = provider_payment_id
    if len(number) > PAYMENT_DOC_NUMBER_MAX:
        number = number.replace("-", "")[:PAYMENT_DOC_NUMBER_MAX]
    return {"number": number, "date": paid_on, "amount": amount}


def _payment_dict(p: Payment) -> dict[str, Any]:
    return {
        "payment_id": p.id,
        "provider": p.provider,
        "provider_payment_id": p.provider_payment_id,
        "order_id": p.order_id,
        "amount": p.amount,
        "currency": p.currency,
        "status": p.status,
        "method": p.method,
        "reason": p.status_reason,
    }


def provider_key(order_key: str, attempt: int) -> str:
    """The Idempotence-Key of the n-th payment attempt for an order: the order's own key for the first one,
    so pressing Pay twice reaches the same provider payment; a fresh, stable key after a declined attempt."""
    if attempt == 1 and len(order_key) <= MAX_PROVIDER_KEY:
        return order_key
    digest = hashlib.sha256(f"{order_key}:{attempt}".encode()).hexdigest()[:40]
    return f"pay-{attempt}-{digest}"


def customer_for(db: Session, order: Order, actor: Any) -> Customer:
    """The receipt goes to whoever placed the order, so a repeated create request is byte-for-byte the same; at the
    address the paying company gave for them (its Membership), never one another company wrote."""
    user = db.get(User, order.created_by_user_id) if order.created_by_user_id else None
    user = user or actor
    if user is None:
        return Customer()
    email = db.scalar(
        sa.select(Membership.email).where(Membership.account_id == order.account_id, Membership.user_id == user.id)
    )
    inn = full_name = None
    order_id = getattr(order, "id", None)  # an order not saved yet has no record
    record = (
        db.scalars(sa.select(Invoice).where(Invoice.order_id == order_id, Invoice.paid_by == "card")).first()
        if order_id is not None
        else None
    )
    if record is not None:
        # A company paying by card: the requisites as they were when it chose to (the УПД carries the same).
        inn, full_name = record.buyer.get("inn"), record.buyer.get("name")
    return Customer(email=email or None, phone=None if email else user.phone, inn=inn, full_name=full_name)


def customer_for_account(db: Session, account_id: int) -> Customer:
    """Whom a refund's receipt goes to: the company's owner, at the address the company gave (else the phone)."""
    row = db.execute(
        sa.select(Membership.email, User.phone)
        .join(User, Membership.user_id == User.id)
        .where(Membership.account_id == account_id, Membership.role == Role.OWNER.value)
        .order_by(Membership.id)
    ).first()
    if row is None:
        return Customer()
    return Customer(email=row.email or None, phone=None if row.email else row.phone)


# --- starting a payment ---------------------------------------------------------------------------------------


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


def _attempt_for(
    db: Session, order: Order, actor: Any, provider: PaymentProvider, now: datetime, method: str | None = None
) -> Payment:
    """The payment attempt to use for this order: the open one, or a new one if the last was declined.

    `method` "sbp" asks for an СБП attempt (a QR code); an open attempt of the other kind is left to its payer: if
    both are paid, the second payment finds the order paid and goes to the balance, flagged (the ledger's rule)."""
    for _ in range(3):
        last = latest_payment(db, order.id)
        # An autopayment's charge is never reused as a hosted payment: the payer paying another way gets a new one.
        reusable = last is not None and not last.idempotence_key.startswith("autopay-")
        if reusable and last.provider == provider.name and last.status != PaymentStatus.CANCELED:
            if last.status != PaymentStatus.PENDING or (last.method == "sbp") == (method == "sbp"):
                return last
            # The payer switched between card and СБП: their earlier open attempt of this kind, if there is one.
            earlier = open_attempt(db, order.id, provider.name, sbp=method == "sbp")
            if earlier is not None:
                return earlier
        attempts = db.scalar(sa.select(sa.func.count()).select_from(Payment).where(Payment.order_id == order.id))
        payment = Payment(
            provider=provider.name,
            idempotence_key=provider_key(order.idempotency_key, (attempts or 0) + 1),
            order_id=order.id,
            account_id=order.account_id,
            created_by_user_id=actor.id if actor is not None else None,
            amount=ledger.order_due(db, order),  # the balance has paid its part at checkout
            currency="RUB",
            method=method,  # "sbp": the attempt asks the provider for a QR code
            status=PaymentStatus.PENDING.value,
            created_at=now,
            updated_at=now,
        )
        db.add(payment)
        try:
            db.commit()
        except IntegrityError:
            db.rollback()  # the same Pay pressed twice at once: the other request's attempt is the one
            continue
        return payment
    raise RuntimeError(f"order {order.id}: could not settle on a payment attempt")


class _Due:
    """The order as the provider sees it: its amount is what is still due after the balance paid its part."""

    def __init__(self, order: Order, amount: int) -> None:
        self._order = order
        self.amount = amount

    def __getattr__(self, name: str) -> Any:
        return getattr(self._order, name)


def _app_config() -> Mapping[str, Any]:
    from flask import current_app, has_app_context

    return current_app.config if has_app_context() else {}


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
        raise billing.PurchaseError("Этот заказ уже не ждёт оплаты: выберите тариф заново.")
    payment = _attempt_for(db, order, actor, provider, now, method)
    if payment.status != PaymentStatus.PENDING:
        return payment, None
    if payment.confirmation_url:
        return payment, payment.confirmation_url
    return payment, _create_at_provider(db, payment, order, actor, provider, return_url, now)


def _create_at_provider(
    db: Session,
    payment: Payment,
    order: Order,
    actor: Any,
    provider: PaymentProvider,
    return_url: str,
    now: datetime,
) -> str | None:
    from portal.payments import autopay  # autopay settles its charges through this module

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
            after=_payment_dict(row),
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


# --- settling -----------------------------------------------------------------------------------------------------


def _lock_payment(db: Session, provider: str, provider_payment_id: str, now: datetime) -> Payment | None:
    # Writing first takes the row lock on PostgreSQL and the database write lock on SQLite (where FOR UPDATE is
    # ignored), so concurrent deliveries queue here and each sees what the previous one committed.
    db.execute(
        sa.update(Payment)
        .where(Payment.provider == provider, Payment.provider_payment_id == provider_payment_id)
        .values(checked_at=now)
    )
    return db.scalars(
        sa.select(Payment)
        .where(Payment.provider == provider, Payment.provider_payment_id == provider_payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def _adopt(db: Session, provider: str, info: PaymentInfo, now: datetime) -> Payment:
    """A provider payment the portal has no row for (its create answer was lost): found by the order id the
    portal itself put in the metadata, and recorded against that order."""
    raw_id = info.metadata.get("order_id", "")
    order = db.get(Order, int(raw_id)) if raw_id.isdigit() else None
    if order is None:
        raise UnknownPayment("Платёж не относится ни к одному заказу портала.")
    digest = hashlib.sha256(f"{provider}:{info.id}".encode()).hexdigest()[:40]
    payment = Payment(
        provider=provider,
        provider_payment_id=info.id,
        idempotence_key=f"adopted-{digest}",
        order_id=order.id,
        account_id=order.account_id,
        amount=order.amount,
        currency="RUB",
        status=PaymentStatus.PENDING.value,
        created_at=now,
        updated_at=now,
        checked_at=now,
    )
    db.add(payment)
    db.flush()
    log.warning("payment %s:%s adopted for order %s", provider, info.id, order.id)
    return payment


def _mismatch(payment: Payment, order: Order, info: PaymentInfo) -> tuple[str, str] | None:
    if info.currency != payment.currency:
        return FLAG_CURRENCY, f"Валюта платежа {info.currency}, а заказ выставлен в {payment.currency}."
    if info.amount != payment.amount:
        return FLAG_AMOUNT, (
            f"Платёжная система сообщает о сумме {format_rub(info.amount)}, "
            f"а к оплате по заказу № {order.id} было {format_rub(payment.amount)}."
        )
    if info.metadata.get("order_id") != str(order.id):
        return FLAG_ORDER, f"В платеже указан заказ «{info.metadata.get('order_id')}», а не № {order.id}."
    return None


def process_provider_payment(
    db: Session,
    provider: PaymentProvider,
    provider_payment_id: str,
    *,
    now: datetime,
    source: str,
) -> Outcome:
    """Re-read a payment at the provider and act on what the provider says, exactly once.

    `source` ("webhook", "return", "tick") is for the audit trail. Ends the caller's transaction first (the caller
    has only read), then runs and commits one transaction of its own. Raises PaymentNotFound / UnknownPayment for
    a payment that is not ours, ProviderUnavailable when the provider cannot be asked (nothing changes then).
    """
    db.commit()
    info = provider.get_payment(provider_payment_id)
    for _ in range(3):
        try:
            payment = _lock_payment(db, provider.name, info.id, now)
            if payment is None:
                payment = _adopt(db, provider.name, info, now)
            outcome = _settle(db, payment, provider.name, info, now=now, source=source)
            if outcome.code == "activated":
                from portal.payments import autopay

                autopay.on_payment_succeeded(db, payment, info, now)
            db.commit()
            if outcome.upd_id is not None:
                _form_upd(db, outcome.upd_id, now)
            return outcome
        except IntegrityError:
            db.rollback()  # two deliveries adopted the same payment at once: the next pass finds the row
        except BaseException:
            db.rollback()
            raise
    raise RuntimeError(f"payment {provider.name}:{provider_payment_id}: could not lock its row")


def _settle(db: Session, payment: Payment, provider: str, info: PaymentInfo, *, now: datetime, source: str) -> Outcome:
    if PaymentStatus(payment.status).is_final:
        return Outcome("already_settled", payment)
    order = db.get(Order, payment.order_id)
    assert order is not None  # a foreign key
    payment.raw = info.raw
    payment.method = info.method or payment.method
    payment.paid_amount = info.amount if info.paid else None
    payment.updated_at = now
    before = {"status": PaymentStatus.PENDING.value}

    if info.status == CANCELED:
        payment.status = PaymentStatus.CANCELED.value
        payment.status_reason = info.reason
        record_audit(
            db,
            actor=None,
            account=payment.account_id,
            action="payment.canceled",
            before=before,
            after=_payment_dict(payment) | {"source": source},
            reason=reason_text(info.reason),
        )
        log.info("payment %s:%s canceled: %s", provider, info.id, info.reason)
        return Outcome("canceled", payment)

    if info.status != SUCCEEDED:
        return Outcome("pending", payment)

    problem = _mismatch(payment, order, info)
    upd_id = None
    if problem is None or problem[0] != FLAG_CURRENCY:
        # Roubles arrived: recorded once in the ledger whatever else is wrong, so they are applied or on the balance.
        receipt, _ = ledger.record_receipt(
            db,
            account_id=payment.account_id,
            method=ReceiptMethod.SBP.value if info.method == "sbp" else ReceiptMethod.CARD.value,
            amount=info.amount,
            received_on=msk_date(now),
            source_key=f"card:{_reference(provider, info.id)}",
            reference=_reference(provider, info.id),
            payment_id=payment.id,
            now=now,
        )
        if problem is None:
            step = ledger.pay_order(
                db,
                receipt,
                order.id,
                now=now,
                config=_app_config(),
                payment_doc=card_payment_doc(info.id, receipt.received_on, info.amount),
            )
            upd_id = step.upd_id
            if step.problem is not None:
                code = FLAG_ALREADY_PAID if order.status == OrderStatus.PAID else FLAG_NOT_APPLICABLE
                problem = (
                    code,
                    f"Оплата заказа № {order.id} не применена: {step.problem}. {format_rub(info.amount)} "
                    "зачислены на баланс компании: их можно вернуть или зачесть в новый заказ.",
                )
        else:
            problem = (problem[0], f"{problem[1]} Деньги зачислены на баланс компании, заказ не применён.")
        if problem is not None:
            ledger.flag(receipt, problem[1])
    if problem is not None:
        code, detail = problem
        payment.status = PaymentStatus.FLAGGED.value
        payment.status_reason = code
        payment.status_detail = detail
        record_audit(
            db,
            actor=None,
            account=payment.account_id,
            action="payment.flagged",
            before=before,
            after=_payment_dict(payment) | {"paid_amount": info.amount, "source": source},
            reason=detail,
        )
        log.warning("payment %s:%s flagged for support: %s", provider, info.id, detail)
        return Outcome("flagged", payment)

    payment.status = PaymentStatus.SUCCEEDED.value
    payment.paid_at = now
    payment.receipt_url = info.receipt_url
    record_audit(
        db,
        actor=None,
        account=payment.account_id,
        action="payment.succeeded",
        before=before,
        after=_payment_dict(payment) | {"paid_amount": info.amount, "source": source},
    )
    log.info("payment %s:%s succeeded: order %s applied", provider, info.id, order.id)
    return Outcome("activated", payment, upd_id=upd_id)


def _form_upd(db: Session, upd_id: int, now: datetime) -> None:
    """Render a company card payment's УПД once the payment is committed; a failure leaves it to the tick's retry."""
    from portal.documents.service import form_upds_now  # documents imports the ledger for its pages

    try:
        form_upds_now(db, [upd_id], now=now, config=_app_config())
    except Exception:
        db.rollback()
        log.exception("УПД %s not formed now; billing tick forms it", upd_id)


def record_notification(
    db: Session, event: NotificationEvent, *, remote_addr: str | None, outcome: str, now: datetime
) -> None:
    """Keep an authentic notification and what came of it, for support (own small transaction)."""
    db.add(
        PaymentNotification(
            provider=event.provider,
            provider_payment_id=event.provider_payment_id,
            event=event.event,
            remote_addr=remote_addr,
            body_sha256=event.body_sha256,
            body=event.body,
            outcome=outcome,
            received_at=now,
        )
    )
    db.commit()


# --- the return page and the tick ------------------------------------------------------------------------------


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
        from flask import current_app

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
    if payment.provider_payment_id is None and payment.idempotence_key.startswith("autopay-"):
        return None  # an autopayment's charge: autopay repeats it with its own key, never as a hosted payment
    if payment.provider_payment_id is None:
        # The create request timed out. Within the key's lifetime, repeating it with the same key returns the
        # payment the provider made (if it did); later the key would make a new one, so the attempt is closed.
        order = db.get(Order, payment.order_id)
        assert order is not None
        if payment.created_at + IDEMPOTENCE_KEY_TTL <= now or order.status != OrderStatus.PENDING:
            return _close_unanswered(db, payment, now, label)
        url = _create_at_provider(db, payment, order, None, provider, return_to, now)
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
        after=_payment_dict(payment) | {"source": "tick"},
        reason=reason_text("provider_unavailable"),
    )
    db.commit()
    return f"{label}: платёжная система так и не ответила, попытка закрыта"


def return_url(base_url: str, order_id: int) -> str:
    """Where the provider sends the payer back: built from BASE_URL, never from the request's Host header."""
    return base_url.rstrip("/") + f"/payments/return/{order_id}"


def _app_providers() -> dict[str, PaymentProvider]:
    from flask import current_app

    from portal.payments.providers import PROVIDER_NAMES, get_provider

    names = {current_app.config["PAYMENT_PROVIDER"]}
    # Payments made through another provider before a switch are still re-read, if that provider is configured.
    if current_app.config.get("YOOKASSA_SHOP_ID") and current_app.config.get("YOOKASSA_SECRET_KEY"):
        names.add("yookassa")
    return {name: get_provider(current_app, name) for name in PROVIDER_NAMES if name in names}


# --- reading ---------------------------------------------------------------------------------------------------


def list_payments(db: Session, account_id: int, *, limit: int = 200) -> list[tuple[Payment, Order]]:
    """An account's card and e-money payments with their orders, newest first (the history page)."""
    rows = db.execute(
        sa.select(Payment, Order)
        .join(Order, Order.id == Payment.order_id)
        .where(Payment.account_id == account_id, Payment.provider_payment_id.is_not(None))
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(limit)
    ).all()
    return [(p, o) for p, o in rows]
