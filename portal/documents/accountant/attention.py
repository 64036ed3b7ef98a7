"""One page for an accountant of several companies: what needs doing in each, with the company named."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus, Role
from portal.documents.models import EdoDocument, EdoStatus, Invoice, InvoiceStatus
from portal.payments import ledger


@dataclass(frozen=True)
class AttentionItem:
    account_id: int
    company: str
    what: str  # «Счёт не оплачен», «УПД ждёт подписи покупателя», «УПД отклонён покупателем»
    number: str
    day: date | None
    amount: int | None
    detail: str = ""


def accountant_accounts(db: Session, user_id: int) -> list[Account]:
    """The companies where the person is an active accountant; nobody else's."""
    return list(
        db.scalars(
            sa.select(Account)
            .join(Membership, Membership.account_id == Account.id)
            .where(
                Membership.user_id == user_id,
                Membership.status == MembershipStatus.ACTIVE.value,
                Membership.role == Role.ACCOUNTANT.value,
            )
            .order_by(Account.name, Account.id)
        )
    )


def list_for_person(db: Session, user_id: int) -> list[AttentionItem]:
    accounts = {a.id: a for a in accountant_accounts(db, user_id)}
    if not accounts:
        return []
    items: list[AttentionItem] = []
    for inv in db.scalars(
        sa.select(Invoice)
        .where(
            Invoice.account_id.in_(accounts),
            Invoice.status == InvoiceStatus.ISSUED.value,
            Invoice.paid_by.is_(None),  # a card order waits for the card, not for the accountant
        )
        .order_by(Invoice.issued_on)
    ):
        remaining = ledger.invoice_remaining(db, inv)
        detail = f"оплатить до {inv.valid_until:%d.%m.%Y}"
        items.append(
            AttentionItem(
                inv.account_id,
                accounts[inv.account_id].name,
                "Счёт не оплачен",
                inv.number,
                inv.issued_on,
                remaining,
                detail,
            )
        )
    for row in db.scalars(
        sa.select(EdoDocument)
        .where(
            EdoDocument.account_id.in_(accounts),
            EdoDocument.status.in_(
                [EdoStatus.SENT.value, EdoStatus.DELIVERED.value, EdoStatus.REJECTED.value, EdoStatus.PENDING.value]
            ),
        )
        .order_by(EdoDocument.id)
    ):
        if row.status == EdoStatus.REJECTED:
            what, detail = "УПД отклонён покупателем", f"причина: {row.reject_reason}"
        elif row.status == EdoStatus.PENDING:
            if not row.last_error:
                continue  # on its way: nothing for the accountant to do yet
            what, detail = "УПД не отправлен в ЭДО", row.last_error
        else:
            what, detail = (
                "УПД ждёт подписи покупателя",
                f"{row.status_title.lower()}, оператор: {row.recipient_operator or row.recipient_id[:3]}",
            )
        day = row.sent_at.date() if row.sent_at else None
        items.append(AttentionItem(row.account_id, accounts[row.account_id].name, what, row.number, day, None, detail))
    return items
