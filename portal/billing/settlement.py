"""Applying a paid order: its period, the upgrade's raise of later periods, and ending rights early."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import User
from portal.audit import record_audit
from portal.billing.catalog import Plan, get_plan
from portal.billing.models import (
    CustomPlan,
    Order,
    OrderKind,
    OrderStatus,
    OrderTopup,
    PeriodKind,
    PeriodStatus,
    SubscriptionPeriod,
)
from portal.billing.orders import _order_dict, close_order, list_order_topups
from portal.billing.pricing import add_months, round_half_up_div
from portal.billing.subscriptions import (
    PeriodInfo,
    PurchaseError,
    SubscriptionState,
    _lock_subscription,
    _state_dict,
    get_subscription_state,
)
from portal.timeutil import format_date, msk_date

# --- applying money ---------------------------------------------------------------------------------------


def _plan_for_order(db: Session, order: Order) -> Plan | None:
    """The plan as it was bought: a custom plan withdrawn since still delivers what was paid for."""
    plan = get_plan(order.plan_code)
    if plan is not None:
        return plan
    row = db.scalars(
        sa.select(CustomPlan).where(CustomPlan.code == order.plan_code, CustomPlan.account_id == order.account_id)
    ).first()
    if row is None:
        return None
    return Plan(row.code, row.seats, row.storage_bytes, order.monthly_price, custom=True, account_id=row.account_id)


def _new_period(
    db: Session,
    *,
    account_id: int,
    kind: str,
    plan: Plan,
    starts_on: date,
    ends_on: date,
    term_start: date,
    months: int,
    order_id: int | None,
    now: datetime,
) -> SubscriptionPeriod:
    row = SubscriptionPeriod(
        account_id=account_id,
        kind=kind,
        status=PeriodStatus.ACTIVE,
        plan_code=plan.code,
        seats=plan.seats,
        storage_bytes=plan.storage_bytes,
        monthly_price=plan.monthly_price,
        custom=plan.custom,
        starts_on=starts_on,
        ends_on=ends_on,
        term_start=term_start,
        months=months,
        order_id=order_id,
        created_at=now,
        # A period that starts later is "applied" by the tick, which records the change when it happens.
        started_at=now if starts_on <= msk_date(now) else None,
    )
    db.add(row)
    return row


def _cut_short(db: Session, period: PeriodInfo, today: date, now: datetime) -> None:
    """An upgrade or a purchase during a trial takes over today: the old period ends yesterday.

    Its days before today stay as they were, so the plan of any past day is still answered correctly; a period
    that started today never took effect and is marked replaced.
    """
    row = db.get(SubscriptionPeriod, period.id)
    assert row is not None
    if row.starts_on < today:
        row.ends_on = today
    else:
        row.status = PeriodStatus.REPLACED
    row.replaced_on = today
    row.ended_at = now  # the new period's own record says what happened; the tick has nothing to add


def _raise_scheduled_period(db: Session, period_id: int, plan: Plan, today: date, now: datetime) -> SubscriptionPeriod:
    """A prepaid later period raised by an upgrade: the old row never takes effect (replaced), a new one on the
    bigger plan takes its dates. It keeps the period's own order, so cancelling it still gives that money back."""
    old = db.get(SubscriptionPeriod, period_id)
    assert old is not None
    old.status = PeriodStatus.REPLACED
    old.replaced_on = today
    old.ended_at = now
    row = _new_period(
        db,
        account_id=old.account_id,
        kind=PeriodKind.PAID,
        plan=plan,
        starts_on=old.starts_on,
        ends_on=old.ends_on,
        term_start=old.term_start,
        months=old.months,
        order_id=old.order_id,
        now=now,
    )
    db.flush()
    return row


def _problem(
    order: Order, plan: Plan | None, state: SubscriptionState, topups: list[OrderTopup] | None = None
) -> str | None:
    """Why money for this order cannot be applied to it now, or None."""
    if order.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED):
        return f"заказ № {order.id} {'отменён' if order.status == OrderStatus.CANCELED else 'истёк'}"
    if order.status == OrderStatus.SCHEDULED:
        return f"заказ № {order.id} ещё не выставлен к оплате: оплата откроется ближе к началу периода"
    if plan is None:
        return "тариф заказа больше не существует"
    if order.kind == OrderKind.UPGRADE:
        current = state.current
        if not (
            state.is_paid
            and current is not None
            and current.ends_on == order.ends_on
            and plan.monthly_price > current.plan.monthly_price
        ):
            return "оплаченный период, к которому относилась доплата, уже закончился или изменился"
        # Each later period it raises must still be upcoming and as it was priced: not begun, canceled or changed.
        upcoming = {p.id: p for p in state.scheduled}
        for topup in topups or ():
            period = upcoming.get(topup.period_id)
            if (
                period is None
                or (period.starts_on, period.ends_on) != (topup.starts_on, topup.ends_on)
                or period.plan.code != topup.old_plan_code
                or period.plan.monthly_price >= plan.monthly_price
            ):
                return (
                    f"оплаченный период с {format_date(topup.starts_on)}, который повышала доплата, "
                    "уже начался, отменён или изменился"
                )
    return None


def order_problem(db: Session, order: Order, now: datetime) -> str | None:
    """Can money still be applied to this (locked) order? None, or why not in Russian words. Locks the account's
    subscription, so the answer holds until the caller's transaction ends: apply_paid_order then applies it."""
    if order.status == OrderStatus.PAID:
        return f"заказ № {order.id} уже оплачен ({order.payment_reference})"
    _lock_subscription(db, order.account_id, now)
    return _problem(
        order,
        _plan_for_order(db, order),
        get_subscription_state(db, order.account_id, now),
        list_order_topups(db, order.id) if order.kind == OrderKind.UPGRADE else None,
    )


def apply_paid_order(db: Session, order_id: int, *, now: datetime, reference: str, actor: User | None = None) -> bool:
    """Money for the order has arrived: apply it exactly once (True), or do nothing if already paid (False).

    Locks the order row, then the account's subscription row, so concurrent deliveries of the same payment
    queue up and all but the first see a paid order. The caller commits together with its payment row.
    """
    order = db.scalars(
        sa.select(Order).where(Order.id == order_id).with_for_update().execution_options(populate_existing=True)
    ).first()
    if order is None:
        raise PurchaseError(f"Заказ {order_id} не найден.")
    if order.status == OrderStatus.PAID:
        return False
    previous_status = order.status
    _lock_subscription(db, order.account_id, now)
    state = get_subscription_state(db, order.account_id, now)
    today = state.today
    plan = _plan_for_order(db, order)
    topups = list_order_topups(db, order.id) if order.kind == OrderKind.UPGRADE else []
    problem = _problem(order, plan, state, topups)
    if problem is not None:
        # Money never activates what can no longer be had: the ledger asks order_problem first and keeps such
        # money on the balance, so reaching this is a caller's mistake, not a customer's situation.
        raise PurchaseError(f"Заказ № {order.id} нельзя применить: {problem}.")
    start = end = None
    term: tuple[date, int] | None = None  # the new period's term: its first day and months
    if order.kind == OrderKind.UPGRADE:
        current = state.current
        if current is not None:
            _cut_short(db, current, today, now)
            start, end = today, current.ends_on
            term = (current.term_start, current.months)
    else:
        if state.is_paid:
            # Renewal and a smaller plan follow what is already paid; a full-price order placed from free but
            # paid after another one is appended too, so no paid day is ever lost.
            start = state.coverage_end
        else:
            start = today
            if state.is_trial and state.current is not None:
                _cut_short(db, state.current, today, now)
        assert start is not None
        end = add_months(start, order.months)
        term = (start, order.months)
    if term is not None:
        assert start is not None and end is not None
        _new_period(
            db,
            account_id=order.account_id,
            kind=PeriodKind.PAID,
            plan=plan,
            starts_on=start,
            ends_on=end,
            term_start=term[0],
            months=term[1],
            order_id=order.id,
            now=now,
        )
    for topup in topups:  # an upgrade's prepaid later periods, raised to its plan after the current one
        assert plan is not None
        topup.new_period_id = _raise_scheduled_period(db, topup.period_id, plan, today, now).id
    order.status = OrderStatus.PAID
    order.paid_at = now
    order.payment_reference = reference
    if start is not None and end is not None:
        order.starts_on, order.ends_on = start, end
    db.flush()
    after = get_subscription_state(db, order.account_id, now)
    record_audit(
        db,
        actor=actor,
        account=order.account_id,
        action="billing.order_paid",
        before=_state_dict(state) | {"order_id": order.id, "order_status": previous_status},
        after=_state_dict(after) | {"order": _order_dict(order, topups), "reference": reference},
    )
    _cancel_stale_upgrades(db, order, now)
    return True


@dataclass(frozen=True)
class RightsCut:
    """What ending an order's rights early did: the days given back and the share of the price they stand for."""

    order_id: int
    cut_on: date  # the first day without the order's rights
    days_paid: int
    days_returned: int
    suggested_refund: int  # kopecks: the order's amount × returned days / paid days, half up


def _order_periods(db: Session, order: Order) -> list[SubscriptionPeriod]:
    return list(
        db.scalars(
            sa.select(SubscriptionPeriod)
            .where(SubscriptionPeriod.order_id == order.id, SubscriptionPeriod.status == PeriodStatus.ACTIVE)
            .order_by(SubscriptionPeriod.starts_on)
        )
    )


def rights_cut(db: Session, order: Order, cut_on: date) -> RightsCut:
    """Price the days of a paid order from `cut_on` on, without changing anything (staff see it before deciding).

    Refused where it would leave a hole: only the account's last paid stretch can end early, and never before the
    day it began was decided (a cut in the past would take back days already used)."""
    if order.status != OrderStatus.PAID:
        raise PurchaseError(f"Заказ № {order.id} не оплачен: прекращать нечего.")
    periods = _order_periods(db, order)
    if not periods:
        raise PurchaseError(f"У заказа № {order.id} нет действующего периода.")
    ends = max(p.ends_on for p in periods)
    if cut_on >= ends:
        raise PurchaseError(
            f"Права по заказу № {order.id} и так заканчиваются {format_date(ends - timedelta(days=1))}."
        )
    later = db.scalars(
        sa.select(SubscriptionPeriod.order_id).where(
            SubscriptionPeriod.account_id == order.account_id,
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.kind == PeriodKind.PAID,
            SubscriptionPeriod.starts_on >= ends,
        )
    ).first()
    if later is not None:
        raise PurchaseError(
            f"После заказа № {order.id} оплачен следующий период (заказ № {later}): сначала верните его."
        )
    paid_days = sum((p.ends_on - p.starts_on).days for p in periods)
    returned = sum((p.ends_on - max(p.starts_on, cut_on)).days for p in periods if p.ends_on > cut_on)
    return RightsCut(
        order_id=order.id,
        cut_on=cut_on,
        days_paid=paid_days,
        days_returned=returned,
        suggested_refund=round_half_up_div(order.amount * returned, paid_days) if paid_days else 0,
    )


def end_rights_early(
    db: Session, order: Order, cut_on: date, *, now: datetime, actor: User | None, reason: str
) -> RightsCut:
    """The order's rights end the day before `cut_on` (a refund of the days after it follows in the ledger).

    The account falls back to what it would have without those days, as the tick handles any period's end."""
    if cut_on < msk_date(now):
        raise PurchaseError("Права нельзя прекратить задним числом: выберите сегодняшний день или позже.")
    _lock_subscription(db, order.account_id, now)
    cut = rights_cut(db, order, cut_on)
    before = get_subscription_state(db, order.account_id, now)
    for period in _order_periods(db, order):
        if period.ends_on <= cut_on:
            continue
        if period.starts_on >= cut_on:
            period.status = PeriodStatus.REPLACED  # never takes effect
            period.replaced_on = cut_on
        else:
            period.ends_on = cut_on
    db.flush()
    after = get_subscription_state(db, order.account_id, now)
    record_audit(
        db,
        actor=actor,
        account=order.account_id,
        action="billing.rights_ended",
        before=_state_dict(before) | {"order_id": order.id},
        after=_state_dict(after) | {"order_id": order.id, "cut_on": cut_on.isoformat(), "days": cut.days_returned},
        reason=reason or None,
    )
    return cut


def _cancel_stale_upgrades(db: Session, paid: Order, now: datetime) -> None:
    """Other unpaid upgrade orders were priced against the plan that has just changed: withdraw them.

    SKIP LOCKED: an order being paid at this very moment is left to its own payment (which, if it arrives,
    is kept and flagged for support), rather than making two payments wait on each other.
    """
    stale = db.scalars(
        sa.select(Order)
        .where(
            Order.account_id == paid.account_id,
            Order.status == OrderStatus.PENDING,
            Order.kind == OrderKind.UPGRADE,
            Order.id != paid.id,
        )
        .with_for_update(skip_locked=True)
    ).all()
    for order in stale:
        reason = f"Тариф изменился после оформления (оплачен заказ № {paid.id}): доплата больше не актуальна."
        close_order(db, order, actor=None, reason=reason, now=now)
