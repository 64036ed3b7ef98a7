"""Autopayment's records: a card the provider saved, the owner's consent to charge it, and each period's renewal."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.billing.models import plan_title_for_code
from portal.db import Base, UTCDateTime, utcnow


class SavedMethod(Base):
    """A payment method the provider keeps for repeat charges; the portal holds only its id and a masked title."""

    __tablename__ = "autopay_methods"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(sa.String(20))
    method_id: Mapped[str] = mapped_column(sa.String(64), unique=True)  # the provider's id
    title: Mapped[str] = mapped_column(sa.String(100))  # «Карта •• 1111»
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))


class ConsentStatus:
    PENDING = "pending"  # ticked at checkout; becomes active when that payment succeeds and the card is saved
    ACTIVE = "active"
    CANCELED = "canceled"
    SUPERSEDED = "superseded"  # a later consent (a new checkout with the box ticked) took its place


class _RenewedPlan:
    """What autopayment renews: the plan, for how many months, at what price (kopecks a period)."""

    plan_code: Mapped[str] = mapped_column(sa.String(64))
    months: Mapped[int] = mapped_column(sa.Integer)
    amount: Mapped[int] = mapped_column(
        sa.BigInteger
    )  # the consent's as shown when consenting; a renewal's when warned

    @property
    def plan_title(self) -> str:
        return plan_title_for_code(self.plan_code)


class AutopayConsent(_RenewedPlan, Base):
    """The owner's consent to charge the saved method: who, when, which terms (their version and the very text)."""

    __tablename__ = "autopay_consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    terms_version: Mapped[str] = mapped_column(sa.String(32))
    terms_text: Mapped[str] = mapped_column(sa.Text)
    given_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(sa.String(16), default=ConsentStatus.PENDING)
    method_id: Mapped[int | None] = mapped_column(sa.ForeignKey("autopay_methods.id", ondelete="SET NULL"))
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    canceled_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    cancel_reason: Mapped[str | None] = mapped_column(sa.String(200))


class RenewalStatus:
    NOTICED = "noticed"  # the warning is due; the charge waits for its day
    CHARGING = "charging"  # one worker holds the attempt (the provider is being called)
    FAILING = "failing"  # an attempt failed, the next one is scheduled
    SUCCEEDED = "succeeded"  # paid: by the card, the balance, or both
    FAILED = "failed"  # the last attempt failed
    CANCELED = "canceled"  # autopayment was cancelled (or the method removed) before it was charged
    SKIPPED = "skipped"  # nothing to charge: renewed another way, or the plan can no longer be renewed as agreed


class AutopayRenewal(_RenewedPlan, Base):
    """One period's renewal by autopayment: warned about, charged (with retries), once per period whatever runs it."""

    __tablename__ = "autopay_renewals"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    consent_id: Mapped[int] = mapped_column(sa.ForeignKey("autopay_consents.id", ondelete="CASCADE"), index=True)
    period_id: Mapped[int] = mapped_column(sa.ForeignKey("subscription_periods.id", ondelete="CASCADE"), unique=True)
    period_ends_on: Mapped[date] = mapped_column(sa.Date)  # the renewal starts here
    charge_on: Mapped[date] = mapped_column(sa.Date)
    status: Mapped[str] = mapped_column(sa.String(16), default=RenewalStatus.NOTICED)
    order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("orders.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    first_attempt_on: Mapped[date | None] = mapped_column(sa.Date)
    next_attempt_on: Mapped[date | None] = mapped_column(sa.Date)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_reason: Mapped[str | None] = mapped_column(sa.String(64))
    charged: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")  # by the card, kopecks
    from_balance: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
