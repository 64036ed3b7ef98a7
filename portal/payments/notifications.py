"""Providers' notifications: each authentic one kept with what came of it, the payment or refund it names re-read."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from portal.payments import refunds
from portal.payments.models import PaymentStatus
from portal.payments.providers.base import NotificationEvent, PaymentNotFound, PaymentProvider, ProviderUnavailable
from portal.payments.service import UnknownPayment, process_provider_payment, record_notification

log = logging.getLogger(__name__)


def receive_notification(
    db: Session, provider: PaymentProvider, event: NotificationEvent, *, remote_addr: str | None, now: datetime
) -> dict[str, Any]:
    """Act on an authentic notification and keep it; returns the answer's JSON, acknowledged with 200.

    Raises ProviderUnavailable (the notification kept as such) when the provider cannot be asked: nothing is known
    yet, the provider repeats the notification and `billing tick` re-reads the payment."""
    if event.event.startswith("refund."):
        return _refund_notification(db, provider, event, remote_addr, now)
    if not event.event.startswith("payment."):
        log.info("webhook %s from %s: event %s kept, nothing to do", provider.name, remote_addr, event.event)
        record_notification(db, event, remote_addr=remote_addr, outcome="ignored", now=now)
        return {"status": "ignored", "outcome": "ignored"}
    try:
        outcome = process_provider_payment(db, provider, event.provider_payment_id, now=now, source="webhook")
    except (PaymentNotFound, UnknownPayment) as exc:
        # Not ours (another shop's integration, a payment made by hand): kept for staff, acknowledged.
        log.warning("webhook %s from %s: payment %s: %s", provider.name, remote_addr, event.provider_payment_id, exc)
        record_notification(db, event, remote_addr=remote_addr, outcome="unknown_payment", now=now)
        return {"status": "unknown_payment", "outcome": "unknown_payment", "detail": exc.message}
    except ProviderUnavailable as exc:
        log.warning("webhook %s: payment %s not re-read: %s", provider.name, event.provider_payment_id, exc)
        record_notification(db, event, remote_addr=remote_addr, outcome="provider_unavailable", now=now)
        raise
    record_notification(db, event, remote_addr=remote_addr, outcome=outcome.code, now=now)
    payment = outcome.payment
    if payment.status == PaymentStatus.FLAGGED:
        # Processed: the money is on the company's balance and on staff's list; a redelivery would change nothing.
        return {"status": payment.status, "outcome": outcome.code, "detail": payment.status_detail}
    return {"status": payment.status, "outcome": outcome.code}


def _refund_notification(
    db: Session, provider: Any, event: NotificationEvent, remote_addr: str | None, now: datetime
) -> dict[str, Any]:
    obj = event.body.get("object") or {}
    refund_id = str(obj.get("id") or "")
    if not hasattr(provider, "get_refund"):
        # The sandbox never sends refund notifications; one claiming to be from it moves no money.
        record_notification(db, event, remote_addr=remote_addr, outcome="ignored", now=now)
        return {"status": "ignored", "outcome": "ignored"}
    try:
        payment_id, amount, status = provider.get_refund(refund_id)
    except PaymentNotFound as exc:
        record_notification(db, event, remote_addr=remote_addr, outcome="refund_not_found", now=now)
        return {"status": "unknown_refund", "outcome": "refund_not_found", "detail": exc.message}
    except ProviderUnavailable:
        record_notification(db, event, remote_addr=remote_addr, outcome="provider_unavailable", now=now)
        raise
    outcome = "refund_pending"
    if status == "succeeded":
        outcome = refunds.record_provider_refund(
            db, provider=provider.name, refund_id=refund_id, payment_id=payment_id, amount=amount, now=now
        )
        db.commit()
    record_notification(db, event, remote_addr=remote_addr, outcome=outcome, now=now)
    return {"status": status or "unknown", "outcome": outcome}
