"""Card and e-money payments settled exactly once; starting one is in `payments.attempts`, re-checking in `payments.recheck`.

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
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.accounts.models import Membership, Role, User
from portal.audit import record_audit
from portal.billing.models import Order, OrderStatus
from portal.documents.models import Invoice
from portal.documents.service import form_upds_now
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
    reason_text,
)
from portal.timeutil import msk_date

log = logging.getLogger(__name__)

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


def _audit_settled(
    db: Session, payment: Payment, action: str, source: str, *, reason: str | None = None, **after: Any
) -> None:
    """A provider payment's end, recorded: it was pending, it is now as the row says (and who told the portal)."""
    record_audit(
        db,
        actor=None,
        account=payment.account_id,
        action=action,
        before={"status": PaymentStatus.PENDING.value},
        after=payment_dict(payment) | after | {"source": source},
        reason=reason,
    )


def payment_dict(p: Payment) -> dict[str, Any]:
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


class _Due:
    """The order as the provider sees it: its amount is what is still due after the balance paid its part."""

    def __init__(self, order: Order, amount: int) -> None:
        self._order = order
        self.amount = amount

    def __getattr__(self, name: str) -> Any:
        return getattr(self._order, name)


def _app_config() -> Mapping[str, Any]:
    return current_app.config if has_app_context() else {}


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
                from portal.payments import autopay  # autopay imports this module to settle its charges

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
    if info.status == CANCELED:
        payment.status = PaymentStatus.CANCELED.value
        payment.status_reason = info.reason
        _audit_settled(db, payment, "payment.canceled", source, reason=reason_text(info.reason))
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
        _audit_settled(db, payment, "payment.flagged", source, reason=detail, paid_amount=info.amount)
        log.warning("payment %s:%s flagged for support: %s", provider, info.id, detail)
        return Outcome("flagged", payment)

    payment.status = PaymentStatus.SUCCEEDED.value
    payment.paid_at = now
    payment.receipt_url = info.receipt_url
    _audit_settled(db, payment, "payment.succeeded", source, paid_amount=info.amount)
    log.info("payment %s:%s succeeded: order %s applied", provider, info.id, order.id)
    return Outcome("activated", payment, upd_id=upd_id)


def _form_upd(db: Session, upd_id: int, now: datetime) -> None:
    """Render a company card payment's УПД once the payment is committed; a failure leaves it to the tick's retry."""
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
