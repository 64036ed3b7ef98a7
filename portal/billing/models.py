"""Billing tables: custom plans, orders, and each account's subscription with its paid and trial periods."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.billing.catalog import Plan, get_plan
from portal.db import Base, UTCDateTime, utcnow
from portal.wording import plural_ru


def plan_title_for_code(code: str) -> str:
    """A plan's title from its code alone, so history stays readable even if a custom plan is gone."""
    plan = get_plan(code)
    if plan is not None:
        return plan.title
    parts = code.split("-")
    if len(parts) == 3 and parts[0] == "custom" and parts[2].isdigit():
        seats = int(parts[2])
        return f"Индивидуальный: {seats} {plural_ru(seats, 'пользователь', 'пользователя', 'пользователей')}"
    return code


class CustomPlan(Base):
    """A plan over 1000 users that support sets for one account; visible only to that account."""

    __tablename__ = "custom_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    seats: Mapped[int] = mapped_column(sa.Integer)
    storage_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    monthly_price: Mapped[int] = mapped_column(sa.BigInteger)
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    def as_plan(self) -> Plan:
        return _stored_custom_plan(self.code, self)


class OrderKind:
    NEW = "new"
    RENEWAL = "renewal"
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"


class OrderStatus:
    # A smaller plan chosen for a period months away: nothing is asked for until its start comes near, when the
    # tick makes it pending (and issues its invoice). Until then no money can be applied to it.
    SCHEDULED = "scheduled"
    PENDING = "pending"
    PAID = "paid"
    EXPIRED = "expired"
    CANCELED = "canceled"


ORDER_KIND_TITLES = {
    "new": "Покупка",
    "renewal": "Продление",
    "upgrade": "Переход на больший тариф",
    "downgrade": "Переход на меньший тариф",
}
ORDER_STATUS_TITLES = {
    "scheduled": "Запланирован",
    "pending": "Ожидает оплаты",
    "paid": "Оплачен",
    "expired": "Истёк",
    "canceled": "Отменён",
}


class Order(Base):
    """What the payer chose to buy, priced by the server; becomes a subscription period once paid."""

    __tablename__ = "orders"
    __table_args__ = (sa.Index("ix_orders_status_expires_at", "status", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    plan_code: Mapped[str] = mapped_column(sa.String(64))
    months: Mapped[int] = mapped_column(sa.Integer)
    kind: Mapped[str] = mapped_column(sa.String(16))
    monthly_price: Mapped[int] = mapped_column(sa.BigInteger)
    subtotal: Mapped[int] = mapped_column(sa.BigInteger)
    discount_percent: Mapped[int] = mapped_column(sa.Integer)
    discount: Mapped[int] = mapped_column(sa.BigInteger)
    proration: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    starts_on: Mapped[date] = mapped_column(sa.Date)
    ends_on: Mapped[date] = mapped_column(sa.Date)  # exclusive
    payer_type: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16), default=OrderStatus.PENDING)
    idempotency_key: Mapped[str] = mapped_column(sa.String(80), unique=True)
    license_version: Mapped[str] = mapped_column(sa.String(32))
    license_accepted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payment_reference: Mapped[str | None] = mapped_column(sa.Text)
    # A smaller plan scheduled unpaid: the day the tick opens its payment (status scheduled → pending).
    opens_on: Mapped[date | None] = mapped_column(sa.Date)

    @property
    def plan_title(self) -> str:
        return plan_title_for_code(self.plan_code)

    @property
    def kind_title(self) -> str:
        return ORDER_KIND_TITLES.get(self.kind, self.kind)

    @property
    def status_title(self) -> str:
        return ORDER_STATUS_TITLES.get(self.status, self.status)

    @property
    def last_day(self) -> date:
        """The last day covered, inclusive, as documents and pages show it («по 24.11.2027»)."""
        return date.fromordinal(self.ends_on.toordinal() - 1)

    def __repr__(self) -> str:
        return f"<Order {self.id} {self.plan_code}×{self.months} {self.kind} {self.status}>"


class OrderTopup(Base):
    """One prepaid later period an upgrade order also raises to its plan, and what that part of the order costs.

    The order's amount is its current-period extra payment plus these; once paid, the period (period_id) is
    replaced by one on the order's plan (new_period_id), and cancelling that one gives this part back."""

    __tablename__ = "order_topups"
    __table_args__ = (sa.UniqueConstraint("order_id", "period_id", name="uq_order_topups_order_period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    period_id: Mapped[int] = mapped_column(sa.ForeignKey("subscription_periods.id", ondelete="CASCADE"), index=True)
    new_period_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("subscription_periods.id", ondelete="SET NULL"), index=True
    )
    old_plan_code: Mapped[str] = mapped_column(sa.String(64))
    starts_on: Mapped[date] = mapped_column(sa.Date)
    ends_on: Mapped[date] = mapped_column(sa.Date)  # exclusive
    months: Mapped[int] = mapped_column(sa.Integer)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    # Set when the owner cancels the raised period before it begins: this part went back to the balance.
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def last_day(self) -> date:
        return date.fromordinal(self.ends_on.toordinal() - 1)


class Subscription(Base):
    """One row per account: the lock that serialises its plan changes, and the once-only trial mark."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), unique=True)
    trial_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PeriodKind:
    PAID = "paid"
    TRIAL = "trial"


class PeriodStatus:
    ACTIVE = "active"
    # An upgrade or a purchase during a trial took over on the period's first day: it never took effect.
    REPLACED = "replaced"


class SubscriptionPeriod(Base):
    """A stretch of Moscow calendar days [starts_on, ends_on) on one plan; outside any period the plan is free.

    The plan's limits and price are copied in, so that the effective plan is one query and a later change of a
    custom plan never rewrites what was already paid for.
    """

    __tablename__ = "subscription_periods"
    __table_args__ = (
        sa.Index("ix_subscription_periods_account_dates", "account_id", "status", "starts_on", "ends_on"),
        sa.CheckConstraint("ends_on > starts_on", name="dates"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))  # paid | trial
    status: Mapped[str] = mapped_column(sa.String(16), default=PeriodStatus.ACTIVE)
    plan_code: Mapped[str] = mapped_column(sa.String(64))
    seats: Mapped[int] = mapped_column(sa.Integer)
    storage_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    monthly_price: Mapped[int] = mapped_column(sa.BigInteger)
    custom: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    starts_on: Mapped[date] = mapped_column(sa.Date)
    ends_on: Mapped[date] = mapped_column(sa.Date)  # exclusive
    # The purchase an upgrade is co-termed with: its first day and months price every later upgrade.
    term_start: Mapped[date] = mapped_column(sa.Date)
    months: Mapped[int] = mapped_column(sa.Integer)
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("orders.id", ondelete="SET NULL"), index=True)
    # The day an upgrade or a purchase during a trial took over; ends_on was moved to it (history keeps its days).
    replaced_on: Mapped[date | None] = mapped_column(sa.Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set by `billing tick` once it has recorded the period's start (if it was scheduled) and its end.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Grace: a paid period that ended while its renewal was being paid (an invoice issued and unpaid) keeps its
    # plan's limits until grace_ends_on (exclusive); the tick sets it at the end and records the fall back after it.
    grace_ends_on: Mapped[date | None] = mapped_column(sa.Date)
    grace_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def as_plan(self) -> Plan:
        catalog_plan = get_plan(self.plan_code)
        if catalog_plan is not None and not self.custom:
            return catalog_plan
        return _stored_custom_plan(self.plan_code, self)

    @property
    def last_day(self) -> date:
        return date.fromordinal(self.ends_on.toordinal() - 1)

    def __repr__(self) -> str:
        return f"<SubscriptionPeriod {self.id} {self.kind} {self.plan_code} {self.starts_on}..{self.ends_on}>"


def _stored_custom_plan(code: str, row: CustomPlan | SubscriptionPeriod) -> Plan:
    """A plan from the limits and price a row keeps (a custom plan's, or a period's own copy): its account's only."""
    return Plan(
        code=code,
        seats=row.seats,
        storage_bytes=row.storage_bytes,
        monthly_price=row.monthly_price,
        custom=True,
        account_id=row.account_id,
    )
