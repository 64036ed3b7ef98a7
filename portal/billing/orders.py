"""Orders: creating one (once per idempotency key), listing, cancelling, and scheduled changes and their cancelling."""

from __future__ import annotations

import functools
import re
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import User
from portal.audit import record_audit
from portal.billing.catalog import Plan
from portal.billing.custom_plans import get_plan_for_account, list_plans_for_account
from portal.billing.models import (
    Order,
    OrderKind,
    OrderStatus,
    OrderTopup,
    PeriodKind,
    PeriodStatus,
    SubscriptionPeriod,
)
from portal.billing.purchases import Purchase, price_purchase
from portal.billing.signals import order_closed, scheduled_period_canceled, scheduled_topup_canceled
from portal.billing.subscriptions import (
    PeriodInfo,
    PurchaseError,
    SubscriptionState,
    _insert_ignoring_conflict,
    _lock_subscription,
    _state_dict,
    get_subscription_state,
)
from portal.money import format_rub
from portal.timeutil import format_date, msk_date

# How an order is paid (its `payer_type` column): by card (СБП too, through the provider) or by invoice.
PAYMENT_METHODS = ("card", "invoice")
# A card payment is made within minutes or not at all; an invoice lives as long as documents says it is valid.
CARD_ORDER_TTL = timedelta(days=1)
INVOICE_ORDER_TTL = timedelta(days=10)  # a fallback only: documents sets the invoice's own validity
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_\-:.]{8,80}$")
# --- orders -----------------------------------------------------------------------------------------------


def _order_by_key(db: Session, key: str) -> Order | None:
    return db.scalars(
        sa.select(Order).where(Order.idempotency_key == key).execution_options(populate_existing=True)
    ).first()


def list_order_topups(db: Session, order_id: int) -> list[OrderTopup]:
    return list(db.scalars(sa.select(OrderTopup).where(OrderTopup.order_id == order_id).order_by(OrderTopup.starts_on)))


def _same_order(
    db: Session,
    order: Order,
    *,
    account_id: int,
    plan_code: str,
    months: int,
    payer_type: str,
    topup_ids: frozenset[int] | None = None,
) -> Order:
    if order.account_id != account_id:
        raise PurchaseError("Этот заказ оформлен в другой компании. Откройте страницу оплаты заново.")
    same_months = order.kind == OrderKind.UPGRADE or order.months == months
    same_topups = (
        topup_ids is None
        or order.kind != OrderKind.UPGRADE
        or {t.period_id for t in list_order_topups(db, order.id)} == set(topup_ids)
    )
    if order.plan_code != plan_code or order.payer_type != payer_type or not same_months or not same_topups:
        raise PurchaseError(
            "Этот заказ уже оформлен на другие условия. Откройте страницу оплаты заново, чтобы оформить новый."
        )
    return order


def create_order(
    db: Session,
    *,
    actor: User | None,
    account_id: int,
    plan_code: str,
    months: int,
    payer_type: str,
    license_version: str,
    idempotency_key: str,
    now: datetime,
    topup_ids: frozenset[int] | None = None,
    defer_days: int | None = None,
) -> Order:
    """A pending order priced by the server; the same key gives the same order. The caller commits.

    An upgrade also raises the prepaid later periods in `topup_ids` (None: every one it can). A smaller plan that
    begins more than `defer_days` days from today is scheduled unpaid: nothing is asked for until the tick opens
    its payment `defer_days` before it begins (the SCHEDULED_PAYMENT_DAYS setting; None: pay now)."""
    if not isinstance(idempotency_key, str) or not IDEMPOTENCY_KEY_RE.match(idempotency_key):
        raise PurchaseError("Форма оплаты повреждена. Откройте страницу оплаты заново.")
    if payer_type not in PAYMENT_METHODS:
        raise PurchaseError("Выберите способ оплаты.")
    if not license_version:
        raise PurchaseError("Нужно принять условия лицензионного договора.")
    existing = _order_by_key(db, idempotency_key)
    if existing is not None:
        return _same_order(
            db,
            existing,
            account_id=account_id,
            plan_code=plan_code,
            months=months,
            payer_type=payer_type,
            topup_ids=topup_ids,
        )

    plan = get_plan_for_account(db, account_id, plan_code)
    if plan is None:
        raise PurchaseError(f"Тариф «{plan_code}» не найден.")
    purchase = price_purchase(db, account_id, plan, months, now, topup_ids=topup_ids)
    ttl = CARD_ORDER_TTL if payer_type == "card" else INVOICE_ORDER_TTL
    opens_on = payment_opens_on(purchase, msk_date(now), defer_days)
    deferred = opens_on is not None
    values = {
        "account_id": account_id,
        "plan_code": plan.code,
        "months": purchase.months,
        "kind": purchase.kind,
        "monthly_price": plan.monthly_price,
        "subtotal": purchase.quote.subtotal,
        "discount_percent": purchase.quote.discount_percent,
        "discount": purchase.quote.discount,
        "proration": purchase.proration,
        "amount": purchase.amount,
        "starts_on": purchase.starts_on,
        "ends_on": purchase.ends_on,
        "payer_type": payer_type,
        "status": OrderStatus.SCHEDULED if deferred else OrderStatus.PENDING,
        "idempotency_key": idempotency_key,
        "license_version": license_version,
        "license_accepted_at": now,
        "created_by_user_id": actor.id if actor is not None else None,
        "created_at": now,
        "expires_at": None if deferred else now + ttl,
        "opens_on": opens_on,
    }
    inserted = _insert_ignoring_conflict(db, Order.__table__, values, "idempotency_key")
    order = _order_by_key(db, idempotency_key)
    assert order is not None
    if not inserted:  # someone else's request with the same key won the race
        return _same_order(
            db,
            order,
            account_id=account_id,
            plan_code=plan_code,
            months=months,
            payer_type=payer_type,
            topup_ids=topup_ids,
        )
    for topup in purchase.topups:
        db.add(
            OrderTopup(
                order_id=order.id,
                period_id=topup.period.id,
                old_plan_code=topup.period.plan.code,
                starts_on=topup.period.starts_on,
                ends_on=topup.period.ends_on,
                months=topup.period.months,
                amount=topup.charge,
            )
        )
    db.flush()
    _replace_scheduled_orders(db, order, actor=actor, now=now)
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="billing.order_created",
        after=_order_dict(order, list_order_topups(db, order.id)),
    )
    return order


def payment_opens_on(purchase: Purchase, today: date, defer_days: int | None) -> date | None:
    """When a smaller plan's payment opens if it is scheduled unpaid (its start is more than `defer_days` away);
    None when it is paid now."""
    if purchase.kind != OrderKind.DOWNGRADE or defer_days is None:
        return None
    if (purchase.starts_on - today).days <= defer_days:
        return None
    return purchase.starts_on - timedelta(days=defer_days)


def _replace_scheduled_orders(db: Session, order: Order, *, actor: User | None, now: datetime) -> None:
    """Another plan chosen for the day a smaller plan was scheduled (unpaid) to begin: the new choice replaces it."""
    if order.kind not in (OrderKind.DOWNGRADE, OrderKind.RENEWAL):
        return
    earlier = db.scalars(
        sa.select(Order)
        .where(
            Order.account_id == order.account_id,
            Order.status == OrderStatus.SCHEDULED,
            Order.starts_on == order.starts_on,
            Order.id != order.id,
        )
        .with_for_update()
    ).all()
    for old in earlier:
        reason = f"Заменён заказом № {order.id}: с {format_date(order.starts_on)} выбран тариф «{order.plan_title}»."
        close_order(db, old, actor=actor, reason=reason, now=now)


def list_scheduled_orders(db: Session, account_id: int) -> list[Order]:
    """Smaller plans scheduled unpaid, soonest first: the dashboard shows when each begins and when it is paid."""
    return list(
        db.scalars(
            sa.select(Order)
            .where(Order.account_id == account_id, Order.status == OrderStatus.SCHEDULED)
            .order_by(Order.starts_on, Order.id)
        )
    )


def _order_dict(order: Order, topups: list[OrderTopup] | None = None) -> dict[str, Any]:
    extra = {}
    if topups:
        extra["topups"] = [
            {"starts_on": t.starts_on.isoformat(), "ends_on": t.ends_on.isoformat(), "amount": t.amount} for t in topups
        ]
    return extra | {
        "order_id": order.id,
        "plan": order.plan_code,
        "months": order.months,
        "kind": order.kind,
        "amount": order.amount,
        "proration": order.proration,
        "starts_on": order.starts_on.isoformat(),
        "ends_on": order.ends_on.isoformat(),
        "payer_type": order.payer_type,
        "status": order.status,
        "license_version": order.license_version,
    }


def get_order(db: Session, account_id: int, order_id: int) -> Order | None:
    return db.scalars(sa.select(Order).where(Order.id == order_id, Order.account_id == account_id)).first()


def list_orders(
    db: Session, account_id: int, *, statuses: tuple[str, ...] | None = None, limit: int = 50
) -> list[Order]:
    return list(db.scalars(_orders_stmt(tuple(statuses or ()), limit), {"account_id": account_id}))


@functools.cache
def _orders_stmt(statuses: tuple[str, ...], limit: int) -> sa.Select[tuple[Order]]:
    """The dashboard's and support's order lists: a handful of shapes, each built once."""
    q = sa.select(Order).where(Order.account_id == sa.bindparam("account_id")).order_by(Order.id.desc()).limit(limit)
    return q.where(Order.status.in_(statuses)) if statuses else q


def cancel_order(
    db: Session, order_id: int, *, actor: User | None, reason: str, now: datetime, account_id: int | None = None
) -> bool:
    """A pending order is canceled (True); one already canceled or expired is left alone (False)."""
    q = sa.select(Order).where(Order.id == order_id)
    if account_id is not None:
        q = q.where(Order.account_id == account_id)
    order = db.scalars(q.with_for_update().execution_options(populate_existing=True)).first()
    if order is None:
        raise PurchaseError("Заказ не найден.")
    if order.status == OrderStatus.PAID:
        raise PurchaseError("Заказ уже оплачен, его нельзя отменить. Для возврата обратитесь в поддержку.")
    if order.status not in (OrderStatus.PENDING, OrderStatus.SCHEDULED):
        return False
    close_order(db, order, actor=actor, reason=reason, now=now)
    return True


# How an unpaid order ends: canceled (by a person, or by what replaced it) or, by the tick, expired unpaid.
_CLOSE_ACTIONS = {OrderStatus.CANCELED: "billing.order_canceled", OrderStatus.EXPIRED: "billing.order_expired"}


def close_order(
    db: Session, order: Order, *, actor: User | None, reason: str, now: datetime, status: str = OrderStatus.CANCELED
) -> None:
    """An unpaid (pending or scheduled) order, locked by the caller, is canceled (or `status` expired): recorded,
    and the features that hold something for it (money applied, an invoice) are told."""
    previous = order.status
    order.status = status
    record_audit(
        db,
        actor=actor,
        account=order.account_id,
        action=_CLOSE_ACTIONS[status],
        before={"order_id": order.id, "status": previous},
        after={"order_id": order.id, "status": status},
        reason=reason,
    )
    order_closed.send(order, db=db, reason=reason, now=now)


# --- scheduled changes ------------------------------------------------------------------------------------


def get_scheduled_period(db: Session, account_id: int, period_id: int, now: datetime) -> PeriodInfo | None:
    """A paid period of this account that has not begun yet (None for another company's, a begun or a gone one)."""
    row = db.scalars(
        sa.select(SubscriptionPeriod).where(
            SubscriptionPeriod.id == period_id,
            SubscriptionPeriod.account_id == account_id,
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.kind == PeriodKind.PAID,
            SubscriptionPeriod.starts_on > msk_date(now),
        )
    ).first()
    return PeriodInfo.from_row(row) if row is not None else None


def cancel_scheduled_period(
    db: Session, *, account_id: int, period_id: int, actor: User | None, reason: str, now: datetime
) -> Order | None:
    """Cancel a paid period before it begins: it is marked replaced and never takes effect; the money paid for it
    goes back to the account's balance (payments) and no УПД is formed for it (documents). Returns its order.

    Only the last scheduled period can go, so no gap opens between two paid ones. Does not commit."""
    info = get_scheduled_period(db, account_id, period_id, now)
    if info is None:
        raise PurchaseError("Этот период уже начался или отменён: отменить его нельзя.")
    # Lock order (see payments.ledger): the order, then the subscription.
    order = None
    if info.order_id is not None:
        order = db.scalars(
            sa.select(Order)
            .where(Order.id == info.order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()
    _lock_subscription(db, account_id, now)
    row = db.scalars(
        sa.select(SubscriptionPeriod)
        .where(SubscriptionPeriod.id == period_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    today = msk_date(now)
    if row.status != PeriodStatus.ACTIVE or row.starts_on <= today:
        raise PurchaseError("Этот период уже начался или отменён: отменить его нельзя.")
    later = db.scalars(
        sa.select(SubscriptionPeriod).where(
            SubscriptionPeriod.account_id == account_id,
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.kind == PeriodKind.PAID,
            SubscriptionPeriod.starts_on >= row.ends_on,
        )
    ).first()
    if later is not None:
        raise PurchaseError(
            f"После этого периода уже оплачен следующий (с {format_date(later.starts_on)}): сначала отмените его."
        )
    before = get_subscription_state(db, account_id, now)
    row.status = PeriodStatus.REPLACED
    row.replaced_on = today
    row.ended_at = now
    db.flush()
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="billing.scheduled_change_canceled",
        before=_state_dict(before) | {"order_id": info.order_id},
        after=_state_dict(get_subscription_state(db, account_id, now)) | {"order_id": info.order_id},
        reason=reason,
    )
    if order is not None:
        scheduled_period_canceled.send(order, db=db, reason=reason, now=now)
    # An unpaid upgrade that would raise this period can no longer be applied: withdrawn now, its invoice annulled.
    waiting = db.scalars(
        sa.select(Order)
        .join(OrderTopup, OrderTopup.order_id == Order.id)
        .where(OrderTopup.period_id == period_id, Order.status == OrderStatus.PENDING)
        .with_for_update(of=Order, skip_locked=True)
    ).all()
    for pending in waiting:
        why = f"Оплаченный период с {format_date(row.starts_on)}, который повышал заказ, отменён."
        close_order(db, pending, actor=actor, reason=why, now=now)
    # An upgrade that raised this period paid its part for days that will now never come: that part goes back too.
    raised = db.scalars(
        sa.select(OrderTopup)
        .where(OrderTopup.new_period_id == period_id, OrderTopup.released_at.is_(None))
        .with_for_update()
    ).all()
    for topup in raised:
        topup.released_at = now
        upgrade = db.get(Order, topup.order_id)
        if upgrade is not None and upgrade.status == OrderStatus.PAID:
            scheduled_topup_canceled.send(upgrade, db=db, amount=topup.amount, reason=reason, now=now)
    return order


def change_plans(db: Session, account_id: int, state: SubscriptionState, period: PeriodInfo) -> list[Plan]:
    """Plans that would begin on the cancelled period's first day: the current one or a smaller one (a bigger plan
    is an upgrade that begins today). Only for the last prepaid period, the one that can be cancelled."""
    if state.current is None or not state.scheduled or state.scheduled[-1].id != period.id:
        return []
    ceiling = state.current.plan.monthly_price
    return [p for p in list_plans_for_account(db, account_id) if not p.is_free and p.monthly_price <= ceiling]


def change_choice(
    db: Session, account_id: int, state: SubscriptionState, period: PeriodInfo, plan_code: str | None
) -> Plan:
    """The plan chosen to begin instead of a cancelled period; PurchaseError for one not among `change_plans`."""
    choices = {p.code: p for p in change_plans(db, account_id, state, period)}
    plan = choices.get((plan_code or "").strip())
    if plan is None:
        raise PurchaseError("Выберите тариф из списка: он начнётся с той же даты, что и отменяемый период.")
    return plan


def scheduled_order_notice(order: Order) -> str:
    """What the owner is told when a smaller plan months away is scheduled: nothing is paid now."""
    how = "счёт придёт" if order.payer_type == "invoice" else "оплатить картой можно будет"
    assert order.opens_on is not None
    return (
        f"Переход запланирован: с {format_date(order.starts_on)} — тариф «{order.plan_title}», "
        f"{format_rub(order.amount)}. Сейчас платить не нужно: {how} с {format_date(order.opens_on)}, "
        "мы напомним. Отменить или изменить выбор можно до начала периода."
    )


def scheduled_canceled_notice(period: PeriodInfo, paid: int, then_plan: Plan | None) -> str:
    """What the owner is told once a scheduled period is cancelled: where its money is, and the next step."""
    if then_plan is not None:
        return (
            f"Период «{period.plan.title}» с {format_date(period.starts_on)} отменён, {format_rub(paid)} за него — на "
            f"балансе компании. Оформите «{then_plan.title}» ниже: баланс пойдёт в его оплату первым. Если не "
            f"оформить, с {format_date(period.starts_on)} будет бесплатный тариф, а деньги останутся на балансе."
        )
    return (
        f"Период «{period.plan.title}» с {format_date(period.starts_on)} отменён. {format_rub(paid)} за него — "
        "на балансе компании: их можно зачесть в новый заказ или вернуть на странице «Платежи»."
    )
