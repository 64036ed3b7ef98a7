"""The owner's actions on one CRM outbox item: try again, cancel, or supply the e-mail the CRM needs."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Membership
from portal.seats.errors import InvalidUserData, MembershipConflict, UserNotFound
from portal.seats.rules import clean_email

from .models import CrmOutbox, OutboxStatus
from .outbox import OPEN, PENDING, kick_after_commit


def get_item(db: Session, account_id: int, item_id: int) -> CrmOutbox | None:
    return db.scalars(sa.select(CrmOutbox).where(CrmOutbox.account_id == account_id, CrmOutbox.id == item_id)).first()


def retry_item(db: Session, item: CrmOutbox, now: datetime) -> None:
    """The owner asks to try again now (after fixing the reason). Does not commit."""
    if item.status not in OPEN:
        return
    twin = db.scalars(
        sa.select(CrmOutbox.id).where(
            CrmOutbox.membership_id == item.membership_id,
            CrmOutbox.operation == item.operation,
            CrmOutbox.status == PENDING,
            CrmOutbox.id != item.id,
        )
    ).first()
    if twin is not None:
        item.status = OutboxStatus.CANCELED.value
        item.last_error = "Такое же задание уже в очереди"
    else:
        item.status = PENDING
        item.attempts = 0
        item.next_attempt_at = now
        item.last_error = None
    item.updated_at = now
    db.flush()
    kick_after_commit(db, item.account_id)


def cancel_item(db: Session, item: CrmOutbox, now: datetime) -> None:
    if item.status in OPEN:
        item.status = OutboxStatus.CANCELED.value
        item.last_error = "Отменено владельцем"
        item.updated_at = now
        db.flush()


def set_email_and_retry(db: Session, item: CrmOutbox, email: str, now: datetime) -> None:
    """Fill in the e-mail a CRM user needs, then retry. Raises InvalidUserData for a bad address."""
    clean = clean_email(email)
    if clean is None:
        raise InvalidUserData("Укажите адрес почты.", field="email")
    membership = db.get(Membership, item.membership_id)
    if membership is None:
        raise UserNotFound()
    if membership.email and membership.email.casefold() != clean.casefold():
        raise MembershipConflict(
            f"У пользователя уже есть адрес {membership.email}: задание отправлено с ним.", field="email"
        )
    membership.email = clean
    retry_item(db, item, now)
