"""Lifecycle notices beyond the renewal calendar: a declined card or СБП payment, the company going over its seat or
storage limit (once per episode), and a scheduled change of plan taking effect. Each event has its own key, so the
sweep sends it once whoever runs it and however often."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus
from portal.billing.catalog import FREE_PLAN
from portal.billing.display import format_storage, users_ru
from portal.billing.models import Order, OrderStatus, PeriodStatus, SubscriptionPeriod, plan_title_for_code
from portal.billing.subscriptions import _insert_ignoring_conflict, get_effective_plan
from portal.money import format_rub
from portal.notices.models import LimitEpisode
from portal.notices.service import TOPIC_CHANGES, TOPIC_FAILED, TOPIC_LIMITS, Letter
from portal.payments.models import METHOD_TITLES, Payment, PaymentStatus
from portal.payments.providers.base import reason_text
from portal.timeutil import format_date_ru, msk_date, msk_midnight

FAILED_NOTICE_DAYS = 2  # a declined attempt the sweep learns of later than this is old news
CHANGE_NOTICE_DAYS = 3  # likewise for a plan change that took effect
# Not a refusal by the payer's bank: the payer stopped, the page timed out, or the portal closed the attempt itself.
NOT_A_FAILURE = ("payer_canceled", "expired_on_confirmation", "superseded", "provider_unavailable")
LIMIT_KINDS = ("seats", "storage")


def due_letters(db: Session, now: datetime, base_url: str) -> list[Letter]:
    return [
        *_failed_payment_letters(db, now, base_url),
        *_limit_letters(db, now, base_url),
        *_change_letters(db, now, base_url),
    ]


# --- a payment declined -----------------------------------------------------------------------------------------


def _failed_payment_letters(db: Session, now: datetime, base_url: str) -> Iterator[Letter]:
    rows = db.execute(
        sa.select(Payment, Order)
        .join(Order, Order.id == Payment.order_id)
        .where(
            Payment.status == PaymentStatus.CANCELED.value,
            Payment.provider_payment_id.is_not(None),
            Payment.updated_at > now - timedelta(days=FAILED_NOTICE_DAYS),
            Payment.updated_at <= now,
            sa.or_(Payment.status_reason.is_(None), Payment.status_reason.not_in(NOT_A_FAILURE)),
            Order.status != OrderStatus.PAID,  # paid meanwhile another way: nothing to act on
            # A declined autopayment charge has its own letter (the retry's date, how to switch off): not two.
            sa.not_(Payment.is_autopay_charge),
        )
        .order_by(Payment.id)
    ).all()
    for payment, order in rows:
        how = "по СБП" if payment.method == "sbp" else "картой"
        method = METHOD_TITLES.get(payment.method or "", "картой")
        link = f"{base_url}/checkout?{urlencode({'plan': order.plan_code, 'months': order.months})}"
        amount = format_rub(payment.amount)
        body = (
            f"Оплата {how} {amount} по заказу № {order.id} (тариф «{order.plan_title}», "
            f"с {format_date_ru(order.starts_on)} по {format_date_ru(order.last_day)}) не прошла.\n"
            f"Причина: {reason_text(payment.status_reason)}\n"
            "Деньги не списаны, тариф не изменился.\n\n"
            f"Оплатить ещё раз — картой, по СБП или по счёту: {link}\n"
        )
        yield Letter(
            order.account_id,
            TOPIC_FAILED,
            f"payment-failed:{payment.id}",
            f"Платёж {amount} не прошёл",
            body,
            f"Платёж {amount} ({method}) не прошёл, тариф не изменился. Оплатить ещё раз: {link}",
        )


# --- over the seat or storage limit, once per episode -----------------------------------------------------------


def _usage_by_account(db: Session) -> dict[int, tuple[int, int]]:
    """account id → (active users, storage used) for the accounts that could be over some limit (every plan has at
    least the free plan's seats and storage) or have an episode open."""
    seats = (
        sa.select(Membership.account_id, sa.func.count().label("n"))
        .where(Membership.status == MembershipStatus.ACTIVE.value)
        .group_by(Membership.account_id)
        .subquery()
    )
    open_episode = sa.select(LimitEpisode.account_id).where(LimitEpisode.ended_at.is_(None))
    rows = db.execute(
        sa.select(Account.id, sa.func.coalesce(seats.c.n, 0), sa.func.coalesce(Account.storage_used_bytes, 0))
        .outerjoin(seats, seats.c.account_id == Account.id)
        .where(
            sa.or_(
                seats.c.n > FREE_PLAN.seats,
                Account.storage_used_bytes > FREE_PLAN.storage_bytes,
                Account.id.in_(open_episode),
            )
        )
        .order_by(Account.id)
    ).all()
    return {int(a): (int(n), int(b)) for a, n, b in rows}


def _episode(db: Session, account_id: int, kind: str, over: bool, now: datetime) -> LimitEpisode | None:
    """The open episode of this kind (opened now if the account is over and none is open), or None once the account
    is within the limit again (the open one is closed). Its number is one more than the last closed episode's, so
    sweeps running at once agree on it, and the unique key lets only one of them insert it."""
    is_open = sa.and_(LimitEpisode.account_id == account_id, LimitEpisode.kind == kind, LimitEpisode.ended_at.is_(None))
    if not over:
        # Read first: an UPDATE of nothing would still take SQLite's write lock for the rest of the sweep.
        if db.scalar(sa.select(LimitEpisode.id).where(is_open).limit(1)) is not None:
            db.execute(sa.update(LimitEpisode).where(is_open).values(ended_at=now))
            db.commit()
        return None
    last_closed = db.scalar(
        sa.select(sa.func.max(LimitEpisode.number)).where(
            LimitEpisode.account_id == account_id, LimitEpisode.kind == kind, LimitEpisode.ended_at.is_not(None)
        )
    )
    number = int(last_closed or 0) + 1
    key = f"{kind}:{account_id}:{number}"
    _insert_ignoring_conflict(
        db,
        LimitEpisode.__table__,
        {"account_id": account_id, "kind": kind, "number": number, "key": key, "started_at": now},
        "key",
    )
    db.commit()
    return db.scalars(sa.select(LimitEpisode).where(LimitEpisode.key == key)).one()


def _limit_letters(db: Session, now: datetime, base_url: str) -> Iterator[Letter]:
    for account_id, (users, stored) in _usage_by_account(db).items():
        plan = get_effective_plan(db, account_id, now)
        over = {"seats": users > plan.seats, "storage": stored > plan.storage_bytes}
        for kind in LIMIT_KINDS:
            episode = _episode(db, account_id, kind, over[kind], now)
            if episode is None:
                continue
            if kind == "seats":
                subject = f"Тариф превышен: {users} из {plan.seats} пользователей"
                body = (
                    f"В компании {users_ru(users)}, а тариф «{plan.title}» рассчитан на {users_ru(plan.seats)}.\n"
                    "Пока пользователей больше, все в мессенджере видят предупреждение о превышении тарифа.\n\n"
                    f"Выбрать тариф побольше: {base_url}/plans\n"
                    f"Или отключите тех, кто больше не работает: {base_url}/team\n"
                )
            else:
                # Plain spaces: Python's header encoder drops the space before a word with a no-break space.
                used, quota = format_storage(stored), format_storage(plan.storage_bytes)
                subject = f"Хранилище переполнено: {used} из {quota}".replace("\xa0", " ")
                body = (
                    f"Файлы компании занимают {format_storage(stored)}, а в тарифе «{plan.title}» — "
                    f"{format_storage(plan.storage_bytes)}.\n"
                    "Пока хранилище переполнено, все в мессенджере видят предупреждение.\n\n"
                    f"Выбрать тариф с хранилищем побольше: {base_url}/plans\n"
                    "Или удалите ненужные файлы в мессенджере.\n"
                )
            yield Letter(account_id, TOPIC_LIMITS, f"over-{episode.key}", subject, body)


# --- a scheduled change took effect -----------------------------------------------------------------------------


def _change_letters(db: Session, now: datetime, base_url: str) -> Iterator[Letter]:
    """A period bought in advance for another plan (a smaller one after the current, say) that began lately."""
    today = msk_date(now)
    before = sa.orm.aliased(SubscriptionPeriod)
    rows = db.execute(
        sa.select(SubscriptionPeriod, before.plan_code)
        .join(
            before,
            sa.and_(
                before.account_id == SubscriptionPeriod.account_id,
                before.ends_on == SubscriptionPeriod.starts_on,
                before.status == PeriodStatus.ACTIVE,
                before.replaced_on.is_(None),
            ),
        )
        .where(
            SubscriptionPeriod.status == PeriodStatus.ACTIVE,
            SubscriptionPeriod.replaced_on.is_(None),
            SubscriptionPeriod.starts_on <= today,
            SubscriptionPeriod.starts_on > today - timedelta(days=CHANGE_NOTICE_DAYS),
            before.plan_code != SubscriptionPeriod.plan_code,
        )
        .order_by(SubscriptionPeriod.id)
    ).all()
    for period, old_code in rows:
        if period.created_at >= msk_midnight(period.starts_on):
            continue  # bought on the day it began: the owner saw it happen at checkout
        title, old_title = plan_title_for_code(period.plan_code), plan_title_for_code(old_code)
        starts = format_date_ru(period.starts_on)
        body = (
            f"С {starts} действует тариф «{title}» вместо «{old_title}»: так было запланировано при оплате.\n"
            f"Тариф «{title}»: {users_ru(period.seats)}, {format_storage(period.storage_bytes)} хранилища, "
            f"оплачен по {format_date_ru(period.last_day)} включительно.\n\n"
            f"Тариф и пользователи: {base_url}/\n"
        )
        yield Letter(
            period.account_id,
            TOPIC_CHANGES,
            f"change-applied:{period.id}",
            f"Тариф «{title}» вступил в силу {starts}",
            body,
        )
