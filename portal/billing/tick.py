"""Time passing: periods that start, end or leave grace, unpaid orders that lapse, scheduled orders that open."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account
from portal.audit import record_audit
from portal.billing import signals
from portal.billing.catalog import FREE_PLAN
from portal.billing.models import Order, OrderStatus, PeriodKind, PeriodStatus, SubscriptionPeriod, plan_title_for_code
from portal.billing.orders import CARD_ORDER_TTL, close_order
from portal.billing.subscriptions import DEFAULT_GRACE_DAYS
from portal.timeutil import format_date, msk_date, msk_midnight

log = logging.getLogger(__name__)


def _lock_due(db: Session, q: sa.Select[Any]) -> Any:
    # SKIP LOCKED: ticks on several servers share the work instead of waiting on (and repeating) each other.
    return db.scalars(q.with_for_update(skip_locked=True).execution_options(populate_existing=True))


def _account_label(db: Session, account_id: int) -> str:
    account = db.get(Account, account_id)
    return f"{account.name} (№ {account_id})" if account is not None else f"аккаунт № {account_id}"


def _open_renewal_invoice(db: Session, period: SubscriptionPeriod) -> Order | None:
    """An invoice for the days after this period, issued before it ended and unpaid at its end: grace is owed.

    An expired one counts if it was still valid when the period ended (a tick that ran late must not decide
    differently from one that ran on time)."""
    ended = msk_midnight(period.ends_on)
    return db.scalars(
        sa.select(Order)
        .where(
            Order.account_id == period.account_id,
            Order.payer_type == "invoice",
            Order.starts_on == period.ends_on,
            Order.created_at < ended,
            sa.or_(
                Order.status == OrderStatus.PENDING,
                sa.and_(Order.status == OrderStatus.EXPIRED, Order.expires_at > ended),
            ),
        )
        .order_by(Order.id)
        .limit(1)
    ).first()


def _has_current_period(db: Session, account_id: int, today: date) -> bool:
    return bool(
        db.scalar(
            sa.select(sa.func.count())
            .select_from(SubscriptionPeriod)
            .where(
                SubscriptionPeriod.account_id == account_id,
                SubscriptionPeriod.status == PeriodStatus.ACTIVE,
                SubscriptionPeriod.starts_on <= today,
                SubscriptionPeriod.ends_on > today,
            )
        )
    )


def _apply_due(db: Session, q: sa.Select[Any], apply: Callable[[Any], str | None]) -> list[str]:
    """Lock the rows that are due and apply one change to each, in order; what each did, for the report."""
    done = []
    for row in _lock_due(db, q).all():
        line = apply(row)
        if line is not None:
            done.append(line)
    return done


def _period_started(db: Session, row: SubscriptionPeriod, now: datetime) -> str:
    row.started_at = now
    previous = db.scalars(
        sa.select(SubscriptionPeriod).where(
            SubscriptionPeriod.account_id == row.account_id,
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.ends_on == row.starts_on,
        )
    ).first()
    renewal = previous is not None and previous.plan_code == row.plan_code
    action = "billing.renewal_started" if renewal else "billing.scheduled_change_applied"
    record_audit(
        db,
        actor=None,
        account=row.account_id,
        action=action,
        before={"plan": previous.plan_code if previous is not None else FREE_PLAN.code},
        after={"plan": row.plan_code, "starts_on": row.starts_on.isoformat(), "ends_on": row.ends_on.isoformat()},
    )
    verb = "продлён" if renewal else "сменился на"
    what = plan_title_for_code(row.plan_code)
    return (
        f"{_account_label(db, row.account_id)}: с {format_date(row.starts_on)} тариф {verb} «{what}» "
        f"по {format_date(row.last_day)}"
    )


def _paid_period_ended(db: Session, row: SubscriptionPeriod) -> str:
    return f"{_account_label(db, row.account_id)}: оплаченный период «{plan_title_for_code(row.plan_code)}»"


def _start_grace(db: Session, row: SubscriptionPeriod, grace_days: int, reason: str, order_id: int | None) -> date:
    """Keep the ended period's plan for the grace days; the last day of grace, for the report."""
    row.grace_ends_on = row.ends_on + timedelta(days=grace_days)
    grace_last = row.grace_ends_on - timedelta(days=1)
    after: dict[str, Any] = {"plan": row.plan_code, "grace_until": grace_last.isoformat()}
    if order_id is not None:
        after["order_id"] = order_id
    record_audit(
        db,
        actor=None,
        account=row.account_id,
        action="billing.grace_started",
        before={"plan": row.plan_code, "kind": row.kind, "last_day": row.last_day.isoformat()},
        after=after,
        reason=reason,
    )
    return grace_last


def _grace_reason(db: Session, period: SubscriptionPeriod) -> str | None:
    """Another feature's reason to keep the ended period's plan in grace, if one has it."""
    for receiver in signals.receivers_in_order(signals.grace_asked):
        reason = receiver(db, period=period)
        if reason:
            return reason
    return None


def has_successor(db: Session, period: SubscriptionPeriod) -> bool:
    """An active period of the account starts the day this one ends: its end changes nothing by itself."""
    follows = sa.select(sa.func.count()).where(
        SubscriptionPeriod.account_id == period.account_id,
        SubscriptionPeriod.status == PeriodStatus.ACTIVE,
        SubscriptionPeriod.starts_on == period.ends_on,
    )
    return bool(db.scalar(follows))


def _period_ended(db: Session, row: SubscriptionPeriod, now: datetime, grace_days: int) -> str | None:
    row.ended_at = now
    if has_successor(db, row):
        return None  # the next period's start is the change, recorded above
    invoice = _open_renewal_invoice(db, row) if row.kind == PeriodKind.PAID and grace_days > 0 else None
    hooked = _grace_reason(db, row) if invoice is None and row.kind == PeriodKind.PAID and grace_days else None
    if hooked is not None:
        grace_last = _start_grace(db, row, grace_days, hooked, None)
        return (
            f"{_paid_period_ended(db, row)} закончился {format_date(row.last_day)}: {hooked[:1].lower()}{hooked[1:]} "
            f"Тариф сохраняется по {format_date(grace_last)}"
        )
    if invoice is not None:
        reason = f"Счёт по заказу № {invoice.id} на продление не оплачен."
        grace_last = _start_grace(db, row, grace_days, reason, invoice.id)
        return (
            f"{_paid_period_ended(db, row)} закончился {format_date(row.last_day)}, счёт по заказу № {invoice.id} не оплачен: "
            f"тариф сохраняется по {format_date(grace_last)}"
        )
    what = "Пробный период" if row.kind == PeriodKind.TRIAL else "Оплаченный период"
    record_audit(
        db,
        actor=None,
        account=row.account_id,
        action="billing.trial_expired" if row.kind == PeriodKind.TRIAL else "billing.expired",
        before={"plan": row.plan_code, "kind": row.kind, "last_day": row.last_day.isoformat()},
        after={"plan": FREE_PLAN.code},
    )
    return (
        f"{_account_label(db, row.account_id)}: {what.lower()} «{plan_title_for_code(row.plan_code)}» "
        f"закончился {format_date(row.last_day)}, действует бесплатный тариф"
    )


def _grace_ended(db: Session, row: SubscriptionPeriod, now: datetime, today: date) -> str | None:
    row.grace_ended_at = now
    if _has_current_period(db, row.account_id, today):
        return None  # the renewal was paid during the grace: its period's start is the record
    assert row.grace_ends_on is not None
    record_audit(
        db,
        actor=None,
        account=row.account_id,
        action="billing.expired",
        before={
            "plan": row.plan_code,
            "kind": row.kind,
            "grace_until": (row.grace_ends_on - timedelta(days=1)).isoformat(),
        },
        after={"plan": FREE_PLAN.code},
        reason="Льготный период закончился, счёт на продление не оплачен.",
    )
    return (
        f"{_account_label(db, row.account_id)}: льготный период тарифа «{plan_title_for_code(row.plan_code)}» "
        f"закончился {format_date(row.grace_ends_on - timedelta(days=1))}, действует бесплатный тариф"
    )


def _order_expired(db: Session, order: Order, now: datetime) -> str:
    close_order(db, order, actor=None, reason="Заказ не оплачен в срок.", now=now, status=OrderStatus.EXPIRED)
    return f"{_account_label(db, order.account_id)}: заказ № {order.id} не оплачен в срок и закрыт"


def _billing_tick(db: Session, now: datetime, grace_days: int = DEFAULT_GRACE_DAYS) -> list[str]:
    today = msk_date(now)
    period = sa.select(SubscriptionPeriod).where(SubscriptionPeriod.status == PeriodStatus.ACTIVE)
    started = period.where(SubscriptionPeriod.started_at.is_(None), SubscriptionPeriod.starts_on <= today).order_by(
        SubscriptionPeriod.starts_on, SubscriptionPeriod.id
    )
    ended = period.where(SubscriptionPeriod.ended_at.is_(None), SubscriptionPeriod.ends_on <= today).order_by(
        SubscriptionPeriod.ends_on, SubscriptionPeriod.id
    )
    graced = period.where(
        SubscriptionPeriod.grace_ended_at.is_(None), SubscriptionPeriod.grace_ends_on <= today
    ).order_by(SubscriptionPeriod.grace_ends_on, SubscriptionPeriod.id)
    expired = (
        sa.select(Order)
        .where(Order.status == OrderStatus.PENDING, Order.expires_at.is_not(None), Order.expires_at <= now)
        .order_by(Order.id)
    )
    done = _apply_due(db, started, lambda row: _period_started(db, row, now))
    done += _apply_due(db, ended, lambda row: _period_ended(db, row, now, grace_days))
    done += _apply_due(db, graced, lambda row: _grace_ended(db, row, now, today))
    done += _apply_due(db, expired, lambda order: _order_expired(db, order, now))
    return done


def _order_opened(db: Session, order: Order, now: datetime) -> str:
    order.status = OrderStatus.PENDING
    ttl_end = msk_midnight(order.starts_on)
    order.expires_at = ttl_end if ttl_end > now else now + CARD_ORDER_TTL
    record_audit(
        db,
        actor=None,
        account=order.account_id,
        action="billing.scheduled_order_opened",
        before={"order_id": order.id, "status": OrderStatus.SCHEDULED},
        after={"order_id": order.id, "status": OrderStatus.PENDING, "amount": order.amount},
    )
    return (
        f"{_account_label(db, order.account_id)}: заказ № {order.id} («{order.plan_title}» с "
        f"{format_date(order.starts_on)}) открыт для оплаты"
    )


def open_scheduled_orders(db: Session, now: datetime) -> list[str]:
    """A smaller plan scheduled unpaid whose start is near: its order becomes payable (pending) once.

    The row lock with SKIP LOCKED and the status change make it once only, however many ticks run at once; the
    invoice for an invoice payer is issued by documents' part of the tick right after, and the notices tell the people.
    Unpaid by its first day, the order lapses then and the account falls to the usual rules."""
    due = (
        sa.select(Order)
        .where(Order.status == OrderStatus.SCHEDULED, Order.opens_on <= msk_date(now))
        .order_by(Order.opens_on, Order.id)
    )
    return _apply_due(db, due, lambda order: _order_opened(db, order, now))


def tick(db: Session, now: datetime, *, grace_days: int = DEFAULT_GRACE_DAYS) -> list[str]:
    """Scheduled work: periods that started or ended (or whose grace ended), unpaid orders, then the other features'
    part (the `tick_done` signal's receivers).

    Commits after billing's own work and after each receiver, so one failing receiver neither undoes nor blocks the
    rest.
    Idempotent: every change is marked on its row, so a second run (or a run on another server) finds nothing.
    """
    done = _billing_tick(db, now, grace_days)
    done += open_scheduled_orders(db, now)
    db.commit()
    for receiver in signals.receivers_in_order(signals.tick_done):
        name = f"{receiver.__module__}.{receiver.__qualname__}"
        try:
            done.extend(receiver(db, now=now) or [])
            db.commit()
        except Exception as exc:  # noqa: BLE001 - a receiver's failure is reported, the tick goes on
            db.rollback()
            log.exception("billing tick receiver %s failed", name)
            done.append(f"Ошибка в {name}: {exc}")
    return done
