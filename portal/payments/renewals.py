"""Autopayment's renewals: the billing tick warns before a period ends, charges the saved method (the balance
first), retries a declined charge on its schedule, and drops a renewal when it is switched off or renewed otherwise."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.audit import record_audit
from portal.billing.custom_plans import get_plan_for_account
from portal.billing.models import Order, OrderKind, OrderStatus, PeriodKind, PeriodStatus, SubscriptionPeriod
from portal.billing.orders import cancel_order, create_order
from portal.billing.purchases import price_purchase
from portal.billing.subscriptions import PurchaseError, _insert_ignoring_conflict
from portal.billing.tick import has_successor
from portal.money import format_rub
from portal.payments import attempts, ledger, service
from portal.payments.autopay import STALE_ATTEMPT, Settings, _drop_order, settings_from
from portal.payments.autopay_models import AutopayConsent, AutopayRenewal, ConsentStatus, RenewalStatus, SavedMethod
from portal.payments.models import Payment, PaymentStatus, autopay_key
from portal.payments.providers.base import ProviderError, ProviderUnavailable, reason_text
from portal.timeutil import format_date, msk_date, msk_midnight

log = logging.getLogger(__name__)


# --- the tick -----------------------------------------------------------------------------------------------


def tick_hook(db: Session, now: datetime) -> list[str]:
    """`billing tick` hook with the current app's provider and settings."""
    from flask import current_app

    from portal.payments.providers import get_provider

    return run(db, now, provider=get_provider(current_app), config=current_app.config)


def run(db: Session, now: datetime, *, provider: Any, config: Mapping[str, Any]) -> list[str]:
    """Warn about the renewals now due, then charge those whose day has come. Safe on several workers at once."""
    s = settings_from(config)
    done = _open_renewals(db, now, s)
    db.commit()
    today = msk_date(now)
    due = list(
        db.scalars(
            sa.select(AutopayRenewal.id)
            .where(
                sa.or_(
                    sa.and_(AutopayRenewal.status == RenewalStatus.NOTICED, AutopayRenewal.charge_on <= today),
                    sa.and_(AutopayRenewal.status == RenewalStatus.FAILING, AutopayRenewal.next_attempt_on <= today),
                    sa.and_(
                        AutopayRenewal.status == RenewalStatus.CHARGING,
                        AutopayRenewal.last_attempt_at < now - STALE_ATTEMPT,
                    ),
                )
            )
            .order_by(AutopayRenewal.id)
        )
    )
    db.commit()
    for renewal_id in due:
        try:
            line = _attempt(db, renewal_id, now, provider=provider, config=config, s=s)
        except ProviderError as exc:
            db.rollback()
            log.warning("autopay renewal %s: %s", renewal_id, exc)
            continue
        if line:
            done.append(line)
    return done


def _open_renewals(db: Session, now: datetime, s: Settings) -> list[str]:
    today = msk_date(now)
    rows = db.execute(
        sa.select(AutopayConsent, SubscriptionPeriod)
        .join(SubscriptionPeriod, SubscriptionPeriod.account_id == AutopayConsent.account_id)
        .where(
            AutopayConsent.status == ConsentStatus.ACTIVE,
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.kind == PeriodKind.PAID,
            SubscriptionPeriod.replaced_on.is_(None),
            SubscriptionPeriod.plan_code == AutopayConsent.plan_code,
            SubscriptionPeriod.ends_on > today,
            SubscriptionPeriod.ends_on <= today + timedelta(days=s.notice_days),
        )
        .order_by(SubscriptionPeriod.id)
    ).all()
    done = []
    for consent, period in rows:
        if _successor(db, period) or db.scalar(
            sa.select(AutopayRenewal.id).where(AutopayRenewal.period_id == period.id)
        ):
            continue
        plan = get_plan_for_account(db, consent.account_id, consent.plan_code)
        if plan is None:
            continue
        try:
            purchase = price_purchase(db, consent.account_id, plan, consent.months, now)
        except PurchaseError:
            continue
        if purchase.kind != OrderKind.RENEWAL or purchase.starts_on != period.ends_on:
            continue  # something else is prepaid after this period: not the renewal agreed to
        # At least a day between the warning and the charge, even when the tick learns of the period late.
        charge_on = max(period.ends_on - timedelta(days=s.charge_days), today + timedelta(days=1))
        inserted = _insert_ignoring_conflict(
            db,
            AutopayRenewal.__table__,
            {
                "account_id": consent.account_id,
                "consent_id": consent.id,
                "period_id": period.id,
                "plan_code": consent.plan_code,
                "months": consent.months,
                "amount": purchase.amount,
                "period_ends_on": period.ends_on,
                "charge_on": charge_on,
                "status": RenewalStatus.NOTICED,
                "attempts": 0,
                "charged": 0,
                "from_balance": 0,
                "created_at": now,
            },
            "period_id",
        )
        if inserted:
            done.append(
                f"аккаунт № {consent.account_id}: автоплатёж {format_rub(purchase.amount)} "
                f"назначен на {format_date(charge_on)}"
            )
    return done


def _successor(db: Session, period: SubscriptionPeriod) -> bool:
    """Something already follows the period: a period, or a change the owner scheduled for its end (an order made
    unpaid months ahead, scheduled or opened) — renewing the old plan too would sell the same days twice."""
    if has_successor(db, period):
        return True
    return bool(
        db.scalar(
            sa.select(sa.func.count())
            .select_from(Order)
            .where(
                Order.account_id == period.account_id,
                Order.opens_on.is_not(None),
                Order.status.in_((OrderStatus.SCHEDULED, OrderStatus.PENDING)),
                Order.starts_on == period.ends_on,
            )
        )
    )


def _claim(db: Session, renewal: AutopayRenewal, now: datetime) -> int | None:
    """Take the renewal's next attempt (or a dead worker's one); its number, or None if another worker has it."""
    today = msk_date(now)
    q = sa.update(AutopayRenewal).where(
        AutopayRenewal.id == renewal.id,
        AutopayRenewal.status == renewal.status,
        AutopayRenewal.attempts == renewal.attempts,
    )
    if renewal.status == RenewalStatus.CHARGING:
        number = renewal.attempts
        q = q.where(AutopayRenewal.last_attempt_at == renewal.last_attempt_at).values(last_attempt_at=now)
    else:
        number = renewal.attempts + 1
        q = q.values(
            status=RenewalStatus.CHARGING,
            attempts=number,
            last_attempt_at=now,
            first_attempt_on=renewal.first_attempt_on or today,
            next_attempt_on=None,
        )
    won = db.execute(q).rowcount == 1
    db.commit()
    return number if won else None


def _finish(db: Session, renewal_id: int, status: str, now: datetime, **values: Any) -> AutopayRenewal:
    renewal = db.get(AutopayRenewal, renewal_id, populate_existing=True, with_for_update=True)
    assert renewal is not None
    renewal.status = status
    for key, value in values.items():
        setattr(renewal, key, value)
    if status in (RenewalStatus.SUCCEEDED, RenewalStatus.FAILED, RenewalStatus.CANCELED, RenewalStatus.SKIPPED):
        renewal.done_at = now
        renewal.next_attempt_on = None
    return renewal


def _attempt(
    db: Session, renewal_id: int, now: datetime, *, provider: Any, config: Mapping[str, Any], s: Settings
) -> str | None:
    renewal = db.get(AutopayRenewal, renewal_id, populate_existing=True)
    assert renewal is not None
    number = _claim(db, renewal, now)
    if number is None:
        return None
    renewal = db.get(AutopayRenewal, renewal_id, populate_existing=True)
    assert renewal is not None
    label = f"аккаунт № {renewal.account_id}: автоплатёж № {renewal.id}"
    consent = db.get(AutopayConsent, renewal.consent_id)
    method = db.get(SavedMethod, consent.method_id) if consent is not None and consent.method_id else None
    if consent is None or consent.status != ConsentStatus.ACTIVE or method is None or method.removed_at is not None:
        r = _finish(db, renewal_id, RenewalStatus.CANCELED, now)
        _drop_order(db, r, now, "Автоплатёж отключён.")
        db.commit()
        return f"{label}: отключён, ничего не списано"

    period = db.get(SubscriptionPeriod, renewal.period_id)
    order = db.get(Order, renewal.order_id) if renewal.order_id else None
    if period is None or (_successor(db, period) and (order is None or order.status != OrderStatus.PAID)):
        # Renewed another way (the owner paid by another card or an invoice): this renewal charges nothing.
        r = _finish(db, renewal_id, RenewalStatus.SKIPPED, now, last_reason="renewed")
        _drop_order(db, r, now, "Период продлён другим платежом.")
        db.commit()
        return f"{label}: период уже продлён, ничего не списано"
    if order is None:
        try:
            order = create_order(
                db,
                actor=None,
                account_id=renewal.account_id,
                plan_code=renewal.plan_code,
                months=renewal.months,
                payer_type="card",
                license_version=config.get("LICENSE_VERSION", ""),
                idempotency_key=autopay_key(renewal.id),
                now=now,
            )
        except PurchaseError as exc:
            db.rollback()
            _finish(db, renewal_id, RenewalStatus.SKIPPED, now, last_reason="not_renewable")
            db.commit()
            return f"{label}: продление невозможно — {exc}"
        if order.kind != OrderKind.RENEWAL or order.starts_on != renewal.period_ends_on:
            cancel_order(db, order.id, actor=None, reason="Не то продление, на которое дано согласие.", now=now)
            _finish(db, renewal_id, RenewalStatus.SKIPPED, now, last_reason="not_renewable", order_id=order.id)
            db.commit()
            return f"{label}: после периода уже оплачено другое, ничего не списано"
        # The order stays payable while retries run and through the grace (the letters link to it).
        last_retry = (renewal.first_attempt_on or msk_date(now)) + timedelta(days=s.retry_days[-1] + 1)
        grace_end = renewal.period_ends_on + timedelta(days=int(config.get("GRACE_DAYS", 7)))
        order.expires_at = msk_midnight(max(last_retry, grace_end))
        order.created_by_user_id = consent.user_id  # the receipt goes to whoever consented
        db.get(AutopayRenewal, renewal_id).order_id = order.id  # type: ignore[union-attr]
        db.commit()

    if order.status == OrderStatus.PAID:
        _finish(db, renewal_id, RenewalStatus.SUCCEEDED, now)
        db.commit()
        return f"{label}: заказ № {order.id} уже оплачен"
    if order.status != OrderStatus.PENDING:
        _finish(db, renewal_id, RenewalStatus.SKIPPED, now, last_reason="order_closed")
        db.commit()
        return f"{label}: заказ № {order.id} закрыт, ничего не списано"

    # The balance first, exactly as checkout applies it; the card only for what is left.
    covered = ledger.settle_from_balance(db, order, now=now, config=config, actor=None)
    from_balance = ledger.order_allocated(db, order.id)
    if covered:
        _finish(db, renewal_id, RenewalStatus.SUCCEEDED, now, from_balance=from_balance)
        db.commit()
        return f"{label}: заказ № {order.id} оплачен с баланса, с карты ничего не списано"
    db.get(AutopayRenewal, renewal_id).from_balance = from_balance  # type: ignore[union-attr]
    db.commit()

    payment = _payment_for(db, order, number, provider, now)
    if payment is None:
        return None
    if payment.provider_payment_id is None:
        customer = service.customer_for(db, order, None)
        db.commit()
        try:
            info = provider.charge_saved(
                service._Due(order, payment.amount), method.method_id, payment.idempotence_key, customer
            )
        except ProviderUnavailable as exc:
            # Nothing is known: the same attempt is repeated with the same key once the claim goes stale.
            log.warning("%s: %s", label, exc.message)
            return f"{label}: платёжная система не ответила, попытка будет повторена"
        except ProviderError as exc:
            reason = "provider_rejected"
            log.error("%s refused: %s", label, exc.message)
            _cancel_payment(db, payment.id, reason, exc.message, now)
            return _failed(db, renewal_id, number, reason, order, now, s, label)
        _attach(db, payment.id, info.id, now)
        provider_payment_id = info.id
    else:
        provider_payment_id = payment.provider_payment_id
    outcome = service.process_provider_payment(db, provider, provider_payment_id, now=now, source="autopay")
    if outcome.code in ("activated", "already_settled") and db.get(Order, order.id).status == OrderStatus.PAID:  # type: ignore[union-attr]
        _finish(db, renewal_id, RenewalStatus.SUCCEEDED, now, charged=outcome.payment.paid_amount or 0)
        db.commit()
        return f"{label}: списано {format_rub(outcome.payment.paid_amount or 0)}, заказ № {order.id} оплачен"
    if outcome.code == "canceled" or outcome.payment.status == PaymentStatus.CANCELED:
        return _failed(db, renewal_id, number, outcome.payment.status_reason, order, now, s, label)
    if outcome.code == "flagged":
        _finish(db, renewal_id, RenewalStatus.SKIPPED, now, last_reason="flagged")
        db.commit()
        return f"{label}: платёж отмечен для поддержки — {outcome.payment.status_detail}"
    return None  # still pending at the provider: re-read once the claim goes stale


def _payment_for(db: Session, order: Order, number: int, provider: Any, now: datetime) -> Payment | None:
    """The attempt's payment row, one per order and attempt number (its idempotence key), stored before the call."""
    key = autopay_key(order.id, number)
    payment = db.scalars(
        sa.select(Payment).where(Payment.idempotence_key == key).execution_options(populate_existing=True)
    ).first()
    if payment is not None:
        if payment.provider_payment_id is None and payment.status != PaymentStatus.PENDING:
            payment.status = PaymentStatus.PENDING.value  # a refused call is asked again only by a stale claim
            db.commit()
        return payment
    payment = attempts.new_attempt(db, order, provider.name, key, now, method="bank_card")
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        return None
    return payment


def _attach(db: Session, payment_id: int, provider_payment_id: str, now: datetime) -> None:
    row = db.scalars(
        sa.select(Payment).where(Payment.id == payment_id).with_for_update().execution_options(populate_existing=True)
    ).one()
    row.provider_payment_id = provider_payment_id
    row.updated_at = now
    record_audit(
        db,
        actor=None,
        account=row.account_id,
        action="payment.started",
        after={"payment_id": row.id, "order_id": row.order_id, "amount": row.amount, "autopay": True},
    )
    try:
        db.commit()
    except IntegrityError:
        db.rollback()  # the provider's notification filed it first: that row is the payment


def _cancel_payment(db: Session, payment_id: int, reason: str, detail: str, now: datetime) -> None:
    db.execute(
        sa.update(Payment)
        .where(Payment.id == payment_id, Payment.provider_payment_id.is_(None))
        .values(status=PaymentStatus.CANCELED.value, status_reason=reason, status_detail=detail, updated_at=now)
    )
    db.commit()


def _failed(
    db: Session,
    renewal_id: int,
    number: int,
    reason: str | None,
    order: Order,
    now: datetime,
    s: Settings,
    label: str,
) -> str:
    today = msk_date(now)
    renewal = db.get(AutopayRenewal, renewal_id, populate_existing=True)
    assert renewal is not None
    first = renewal.first_attempt_on or today
    if number < len(s.retry_days):
        next_on = max(first + timedelta(days=s.retry_days[number]), today + timedelta(days=1))
        _finish(db, renewal_id, RenewalStatus.FAILING, now, last_reason=reason, next_attempt_on=next_on)
        tail = f"следующая попытка {format_date(next_on)}"
    else:
        r = _finish(db, renewal_id, RenewalStatus.FAILED, now, last_reason=reason)
        _drop_order(db, r, now, "Автоплатёж не прошёл ни с одной попытки.")
        tail = "попыток больше не будет"
    record_audit(
        db,
        actor=None,
        account=renewal.account_id,
        action="autopay.charge_failed",
        after={"renewal_id": renewal_id, "order_id": order.id, "attempt": number, "reason": reason},
        reason=reason_text(reason),
    )
    db.commit()
    return f"{label}: попытка {number} не прошла ({reason_text(reason)}), {tail}"
