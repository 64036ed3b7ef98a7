"""Autopayment with the owner's consent: the card (or СБП account) saved at checkout renews the same plan; renewals.py runs it.

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
from sqlalchemy.orm import Session

from portal.accounts.models import User
from portal.audit import record_audit
from portal.billing.custom_plans import get_plan_for_account
from portal.billing.display import months_ru
from portal.billing.models import Order, OrderKind, OrderStatus, SubscriptionPeriod, plan_title_for_code
from portal.billing.orders import cancel_order
from portal.billing.pricing import quote
from portal.billing.purchases import Purchase
from portal.billing.subscriptions import PurchaseError, _insert_ignoring_conflict
from portal.money import format_rub
from portal.payments.autopay_models import AutopayConsent, AutopayRenewal, ConsentStatus, RenewalStatus, SavedMethod
from portal.payments.models import Payment
from portal.payments.providers.base import PaymentInfo
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


def offered_for(purchase: Purchase) -> bool:
    """An upgrade is co-termed with the current period: autopayment renews whole periods of one plan only."""
    return purchase.kind != OrderKind.UPGRADE


# --- consent ------------------------------------------------------------------------------------------------


def request_consent(
    db: Session, order: Order, actor: User | None, *, config: Mapping[str, Any], now: datetime
) -> AutopayConsent | None:
    """The box was ticked at checkout: the consent waits for this order's card payment (which saves the card)."""
    if order.kind == OrderKind.UPGRADE:
        return None
    amount = quote(get_plan_for_account(db, order.account_id, order.plan_code) or _no_plan(), order.months).total
    _insert_ignoring_conflict(
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
    raise PurchaseError("Тариф больше недоступен.")


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
    _insert_ignoring_conflict(
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
        cancel_order(db, order.id, actor=None, reason=reason, now=now)


# --- billing's grace ----------------------------------------------------------------------------------------


def grace_reason(db: Session, period: SubscriptionPeriod) -> str | None:
    """Billing asks when a paid period ends unrenewed: retries still running keep the plan in grace."""
    open_renewal = db.scalar(
        sa.select(sa.func.count())
        .select_from(AutopayRenewal)
        .where(AutopayRenewal.period_id == period.id, AutopayRenewal.status.in_(OPEN))
    )
    return "Автоплатёж не прошёл, повторные попытки продолжаются." if open_renewal else None
