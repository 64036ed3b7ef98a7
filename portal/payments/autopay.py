"""Autopayment with the owner's consent: the card saved at checkout renews the same plan before the period ends.

The calendar of one renewal (days before the paid period's end, from the settings): the warning letter
(AUTOPAY_NOTICE_DAYS_BEFORE), then the charge (AUTOPAY_CHARGE_DAYS_BEFORE) — the balance first, the card only for the
rest — and after a decline retries on AUTOPAY_RETRY_DAYS after the first attempt, each with a letter. While retries
run past the period's end, billing keeps the plan in grace. Every step is claimed by a conditional update of the
renewal's row, and every charge carries an idempotence key per order and attempt, so the billing tick may run on
several workers at once and a period is charged once. Money takes the card payment's own path: the provider's
payment is settled by `service.process_provider_payment` (receipt → allocation → order activation).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.accounts.models import User
from portal.audit import record_audit
from portal.billing import service as billing
from portal.billing.display import months_ru
from portal.billing.models import (
    Order,
    OrderKind,
    OrderStatus,
    PeriodKind,
    PeriodStatus,
    SubscriptionPeriod,
    plan_title_for_code,
)
from portal.billing.pricing import quote
from portal.money import format_rub
from portal.payments import ledger, service
from portal.payments.autopay_models import (
    AutopayConsent,
    AutopayRenewal,
    ConsentStatus,
    RenewalStatus,
    SavedMethod,
)
from portal.payments.models import Payment, PaymentStatus
from portal.payments.providers.base import PaymentInfo, ProviderError, ProviderUnavailable, reason_text
from portal.timeutil import format_date, msk_date, msk_midnight
from portal.wording import plural_ru

log = logging.getLogger(__name__)

# The version of the autopayment terms the owner agrees to at checkout; change it whenever the text below changes.
AUTOPAY_TERMS_VERSION = "2026-11-30"  # the text names СБП beside the card
# A worker that claimed an attempt and went silent this long has died: the attempt is taken over (same key).
STALE_ATTEMPT = timedelta(minutes=10)
OPEN = (RenewalStatus.NOTICED, RenewalStatus.CHARGING, RenewalStatus.FAILING)


@dataclass(frozen=True)
class Settings:
    charge_days: int
    notice_days: int
    retry_days: tuple[int, ...]


def parse_retry_days(raw: str) -> tuple[int, ...]:
    """ "0,1,3,5" → (0, 1, 3, 5): days after the first attempt, the first being 0, each later than the one before."""
    try:
        days = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"expected days like 0,1,3,5, got {raw!r}") from None
    if not days or days[0] != 0 or any(b <= a for a, b in zip(days, days[1:], strict=False)):
        raise ValueError(f"expected increasing days starting with 0, like 0,1,3,5, got {raw!r}")
    return days


def settings_from(config: Mapping[str, Any]) -> Settings:
    return Settings(
        charge_days=int(config.get("AUTOPAY_CHARGE_DAYS_BEFORE", 3)),
        notice_days=int(config.get("AUTOPAY_NOTICE_DAYS_BEFORE", 5)),
        retry_days=parse_retry_days(str(config.get("AUTOPAY_RETRY_DAYS", "0,1,3,5"))),
    )


def _days_ru(n: int) -> str:
    return f"{n} {plural_ru(n, 'день', 'дня', 'дней')}"


def terms_text(plan_code: str, months: int, amount: int, config: Mapping[str, Any]) -> str:
    """What the owner agrees to, shown at checkout and kept word for word with the consent."""
    s = settings_from(config)
    period = months_ru(months)
    return (
        f"Я соглашаюсь на автоматическое продление тарифа «{plan_title_for_code(plan_code)}» на {period}: "
        f"{format_rub(amount)} каждые {period}, пока автоплатёж включён, с карты или счёта в банке (СБП), которыми я сейчас оплачиваю. "
        f"Списание — за {_days_ru(s.charge_days)} до окончания оплаченного периода; за {_days_ru(s.notice_days)} "
        "до окончания придёт письмо с суммой и датой списания. Сначала в оплату идёт баланс компании, с карты "
        "или счёта списывается только остаток. Если списание не пройдёт, будут ещё попытки — о каждой придёт письмо. "
        "Отключить автоплатёж или удалить карту можно в любой момент в разделе «Платежи», одной кнопкой; "
        "после отключения ничего не списывается."
    )


def offered_for(purchase: billing.Purchase) -> bool:
    """An upgrade is co-termed with the current period: autopayment renews whole periods of one plan only."""
    return purchase.kind != OrderKind.UPGRADE


# --- consent ------------------------------------------------------------------------------------------------


def request_consent(
    db: Session, order: Order, actor: User | None, *, config: Mapping[str, Any], now: datetime
) -> AutopayConsent | None:
    """The box was ticked at checkout: the consent waits for this order's card payment (which saves the card)."""
    if order.kind == OrderKind.UPGRADE:
        return None
    amount = quote(
        billing.get_plan_for_account(db, order.account_id, order.plan_code) or _no_plan(), order.months
    ).total
    billing._insert_ignoring_conflict(
        db,
        AutopayConsent.__table__,
        {
            "account_id": order.account_id,
            "user_id": actor.id if actor is not None else None,
            "order_id": order.id,
            "plan_code": order.plan_code,
            "months": order.months,
            "amount": amount,
            "terms_version": AUTOPAY_TERMS_VERSION,
            "terms_text": terms_text(order.plan_code, order.months, amount, config),
            "given_at": now,
            "status": ConsentStatus.PENDING,
        },
        "order_id",
    )
    return db.scalars(sa.select(AutopayConsent).where(AutopayConsent.order_id == order.id)).first()


def _no_plan() -> Any:
    raise billing.PurchaseError("Тариф больше недоступен.")


def wants_saving(db: Session, order_id: int) -> bool:
    return bool(
        db.scalar(
            sa.select(sa.func.count())
            .select_from(AutopayConsent)
            .where(AutopayConsent.order_id == order_id, AutopayConsent.status == ConsentStatus.PENDING)
        )
    )


def method_title(info: PaymentInfo) -> str:
    method = info.raw.get("payment_method") or {}
    last4 = (method.get("card") or {}).get("last4") if isinstance(method, dict) else None
    if last4:
        return f"Карта •• {last4}"
    if isinstance(method, dict) and method.get("type") == "sbp":
        return "Счёт в банке через СБП"
    return "Сохранённый способ оплаты"


def on_payment_succeeded(db: Session, payment: Payment, info: PaymentInfo, now: datetime) -> None:
    """A checkout payment succeeded: if the owner consented and the provider saved the method, autopayment is on."""
    consent = db.scalars(
        sa.select(AutopayConsent)
        .where(AutopayConsent.order_id == payment.order_id, AutopayConsent.status == ConsentStatus.PENDING)
        .with_for_update()
    ).first()
    if consent is None:
        return
    method = info.raw.get("payment_method") or {}
    if not isinstance(method, dict) or not method.get("saved") or not method.get("id"):
        log.warning("order %s: consent to autopayment, but %s did not save the method", payment.order_id, info.id)
        return
    billing._insert_ignoring_conflict(
        db,
        SavedMethod.__table__,
        {
            "account_id": payment.account_id,
            "provider": payment.provider,
            "method_id": str(method["id"])[:64],
            "title": method_title(info),
            "created_at": now,
        },
        "method_id",
    )
    saved = db.scalars(
        sa.select(SavedMethod).where(
            SavedMethod.provider == payment.provider, SavedMethod.method_id == str(method["id"])[:64]
        )
    ).one()
    for old in db.scalars(
        sa.select(AutopayConsent).where(
            AutopayConsent.account_id == consent.account_id, AutopayConsent.status == ConsentStatus.ACTIVE
        )
    ):
        old.status = ConsentStatus.SUPERSEDED
        old.canceled_at = now
    consent.status = ConsentStatus.ACTIVE
    consent.method_id = saved.id
    consent.activated_at = now
    record_audit(
        db,
        actor=db.get(User, consent.user_id) if consent.user_id else None,
        account=consent.account_id,
        action="autopay.consent_given",
        after={
            "consent_id": consent.id,
            "plan": consent.plan_code,
            "months": consent.months,
            "amount": consent.amount,
            "terms_version": consent.terms_version,
            "method": saved.title,
            "given_at": consent.given_at.isoformat(),
        },
    )


@dataclass(frozen=True)
class AutopayInfo:
    """What the payments page and the dashboard say about an account's autopayment."""

    consent: AutopayConsent
    method: SavedMethod
    renewal: AutopayRenewal | None  # the open renewal: its charge date and amount


def get_autopay(db: Session, account_id: int) -> AutopayInfo | None:
    consent = db.scalars(
        sa.select(AutopayConsent).where(
            AutopayConsent.account_id == account_id, AutopayConsent.status == ConsentStatus.ACTIVE
        )
    ).first()
    if consent is None or consent.method_id is None:
        return None
    method = db.get(SavedMethod, consent.method_id)
    if method is None or method.removed_at is not None:
        return None
    renewal = db.scalars(
        sa.select(AutopayRenewal)
        .where(AutopayRenewal.consent_id == consent.id, AutopayRenewal.status.in_(OPEN))
        .order_by(AutopayRenewal.id.desc())
    ).first()
    return AutopayInfo(consent, method, renewal)


def list_methods(db: Session, account_id: int) -> list[SavedMethod]:
    return list(
        db.scalars(
            sa.select(SavedMethod)
            .where(SavedMethod.account_id == account_id, SavedMethod.removed_at.is_(None))
            .order_by(SavedMethod.id)
        )
    )


def cancel_autopay(db: Session, account_id: int, *, actor: User | None, now: datetime, reason: str) -> bool:
    """Autopayment off: nothing more is charged — an open renewal is dropped with its order (any part the balance
    paid goes back to it). False if it was not on. The caller commits."""
    consent = db.scalars(
        sa.select(AutopayConsent)
        .where(AutopayConsent.account_id == account_id, AutopayConsent.status == ConsentStatus.ACTIVE)
        .with_for_update()
    ).first()
    if consent is None:
        return False
    consent.status = ConsentStatus.CANCELED
    consent.canceled_at = now
    consent.canceled_by_user_id = actor.id if actor is not None else None
    consent.cancel_reason = reason[:200]
    for renewal in db.scalars(
        sa.select(AutopayRenewal)
        .where(
            AutopayRenewal.consent_id == consent.id,
            AutopayRenewal.status.in_((RenewalStatus.NOTICED, RenewalStatus.FAILING)),
        )
        .with_for_update()
    ):
        renewal.status = RenewalStatus.CANCELED
        renewal.done_at = now
        renewal.next_attempt_on = None
        _drop_order(db, renewal, now, "Автоплатёж отключён.")
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="autopay.consent_canceled",
        before={"consent_id": consent.id, "status": ConsentStatus.ACTIVE},
        after={"consent_id": consent.id, "status": ConsentStatus.CANCELED},
        reason=reason,
    )
    return True


def remove_method(db: Session, account_id: int, *, actor: User | None, now: datetime) -> bool:
    """The saved card forgotten (and with it autopayment). False if there was none. The caller commits."""
    methods = db.scalars(
        sa.select(SavedMethod)
        .where(SavedMethod.account_id == account_id, SavedMethod.removed_at.is_(None))
        .with_for_update()
    ).all()
    if not methods:
        return False
    cancel_autopay(db, account_id, actor=actor, now=now, reason="Карта удалена.")
    for method in methods:
        method.removed_at = now
        method.removed_by_user_id = actor.id if actor is not None else None
        record_audit(
            db,
            actor=actor,
            account=account_id,
            action="autopay.method_removed",
            before={"method": method.title, "provider": method.provider},
            after={"removed": True},
        )
    return True


def _drop_order(db: Session, renewal: AutopayRenewal, now: datetime, reason: str) -> None:
    if renewal.order_id is None:
        return
    order = db.get(Order, renewal.order_id)
    if order is not None and order.status == OrderStatus.PENDING:
        billing.cancel_order(db, order.id, actor=None, reason=reason, now=now)


# --- billing's grace ----------------------------------------------------------------------------------------


def grace_reason(db: Session, period: SubscriptionPeriod) -> str | None:
    """Billing asks when a paid period ends unrenewed: retries still running keep the plan in grace."""
    open_renewal = db.scalar(
        sa.select(sa.func.count())
        .select_from(AutopayRenewal)
        .where(AutopayRenewal.period_id == period.id, AutopayRenewal.status.in_(OPEN))
    )
    return "Автоплатёж не прошёл, повторные попытки продолжаются." if open_renewal else None


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
        plan = billing.get_plan_for_account(db, consent.account_id, consent.plan_code)
        if plan is None:
            continue
        try:
            purchase = billing.price_purchase(db, consent.account_id, plan, consent.months, now)
        except billing.PurchaseError:
            continue
        if purchase.kind != OrderKind.RENEWAL or purchase.starts_on != period.ends_on:
            continue  # something else is prepaid after this period: not the renewal agreed to
        # At least a day between the warning and the charge, even when the tick learns of the period late.
        charge_on = max(period.ends_on - timedelta(days=s.charge_days), today + timedelta(days=1))
        inserted = billing._insert_ignoring_conflict(
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
    if db.scalar(
        sa.select(sa.func.count())
        .select_from(SubscriptionPeriod)
        .where(
            SubscriptionPeriod.account_id == period.account_id,
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.starts_on == period.ends_on,
        )
    ):
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
            order = billing.create_order(
                db,
                actor=None,
                account_id=renewal.account_id,
                plan_code=renewal.plan_code,
                months=renewal.months,
                payer_type="card",
                license_version=config.get("LICENSE_VERSION", ""),
                idempotency_key=f"autopay-{renewal.id}",
                now=now,
            )
        except billing.PurchaseError as exc:
            db.rollback()
            _finish(db, renewal_id, RenewalStatus.SKIPPED, now, last_reason="not_renewable")
            db.commit()
            return f"{label}: продление невозможно — {exc}"
        if order.kind != OrderKind.RENEWAL or order.starts_on != renewal.period_ends_on:
            billing.cancel_order(db, order.id, actor=None, reason="Не то продление, на которое дано согласие.", now=now)
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
    key = f"autopay-{order.id}-{number}"
    payment = db.scalars(
        sa.select(Payment).where(Payment.idempotence_key == key).execution_options(populate_existing=True)
    ).first()
    if payment is not None:
        if payment.provider_payment_id is None and payment.status != PaymentStatus.PENDING:
            payment.status = PaymentStatus.PENDING.value  # a refused call is asked again only by a stale claim
            db.commit()
        return payment
    payment = Payment(
        provider=provider.name,
        idempotence_key=key,
        order_id=order.id,
        account_id=order.account_id,
        amount=ledger.order_due(db, order),
        currency="RUB",
        status=PaymentStatus.PENDING.value,
        method="bank_card",
        created_at=now,
        updated_at=now,
    )
    db.add(payment)
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
