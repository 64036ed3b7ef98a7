"""Money in: card and e-money payments, the notifications that settled them, the sandbox acquirer's records, the ledger (receipts, allocations, refunds) and imported bank statements."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, utcnow
from portal.titled_enums import TitledStrEnum


class PaymentStatus(TitledStrEnum):
    PENDING = "pending", "Обрабатывается"
    SUCCEEDED = "succeeded", "Оплачен"
    CANCELED = "canceled", "Не прошёл"
    FLAGGED = "flagged", "На проверке"  # money may have moved but the portal did not act: support decides

    @property
    def is_final(self) -> bool:
        return self is not PaymentStatus.PENDING


# Methods as YooKassa names them (payment_method.type); the sandbox uses the same names.
METHOD_TITLES = {
    "bank_card": "Банковская карта",
    "yoo_money": "ЮMoney",
    "sbp": "СБП",
    "sberbank": "SberPay",
    "tinkoff_bank": "T-Pay",
    "mir_pay": "Mir Pay",
}

# Autopayment charges a saved method with no payer present; its keys carry this prefix, so such a charge is never
# reused as a hosted payment, re-created at the provider or announced as the payer's own declined payment.
AUTOPAY_KEY_PREFIX = "autopay-"


def autopay_key(*parts: object) -> str:
    """An autopayment's idempotence key: its order's (`autopay-<renewal>`) or a charge's (`autopay-<order>-<n>`)."""
    return AUTOPAY_KEY_PREFIX + "-".join(str(part) for part in parts)


class Payment(Base):
    """One attempt to pay an order through a payment provider; a provider payment id is settled exactly once."""

    __tablename__ = "payments"
    __table_args__ = (
        sa.UniqueConstraint("provider", "provider_payment_id"),
        sa.Index("ix_payments_status_checked", "status", "checked_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(20))
    # NULL only while the provider has not answered the create request (time-out): the idempotence key
    # then lets a retry get the same provider payment instead of a second one.
    provider_payment_id: Mapped[str | None] = mapped_column(sa.String(64))
    idempotence_key: Mapped[str] = mapped_column(sa.String(80), unique=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id", ondelete="RESTRICT"), index=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="RESTRICT"), index=True)
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)  # kopecks, what the order asked for
    currency: Mapped[str] = mapped_column(sa.String(3), default="RUB")
    status: Mapped[str] = mapped_column(sa.String(20), default=PaymentStatus.PENDING.value)
    # The provider's cancellation reason code (e.g. insufficient_funds) or the portal's own flag code.
    status_reason: Mapped[str | None] = mapped_column(sa.String(64))
    # For support: what exactly did not match, in Russian.
    status_detail: Mapped[str | None] = mapped_column(sa.Text)
    method: Mapped[str | None] = mapped_column(sa.String(40))
    confirmation_url: Mapped[str | None] = mapped_column(sa.String(2000))
    receipt_url: Mapped[str | None] = mapped_column(sa.String(2000))
    # What the provider said about the payment last time (its API object, never credentials).
    raw: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    paid_amount: Mapped[int | None] = mapped_column(sa.BigInteger)  # what the provider reports, kopecks
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last re-read at the provider
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @hybrid_property
    def is_autopay_charge(self) -> bool:
        """Made by autopayment (its key says so); on the class, the same test as a query's condition."""
        return self.idempotence_key.startswith(AUTOPAY_KEY_PREFIX)

    @property
    def status_title(self) -> str:
        return PaymentStatus(self.status).title

    @property
    def method_title(self) -> str:
        if not self.method:
            return "—"
        return METHOD_TITLES.get(self.method, self.method)

    def __repr__(self) -> str:
        return f"<Payment {self.id} {self.provider}:{self.provider_payment_id} {self.status}>"


class PaymentNotification(Base):
    """A notification that passed the provider's authenticity check, kept for support with what came of it."""

    __tablename__ = "payment_notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(20))
    provider_payment_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    event: Mapped[str] = mapped_column(sa.String(64))
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64))
    body_sha256: Mapped[str] = mapped_column(sa.String(64))
    body: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    outcome: Mapped[str] = mapped_column(sa.String(40))  # activated, already_settled, canceled, flagged, …
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class SandboxPayment(Base):
    """The local sandbox acquirer's own ledger: it stands in for the provider's database, not the portal's."""

    __tablename__ = "sandbox_payments"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    idempotence_key: Mapped[str] = mapped_column(sa.String(80), unique=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    description: Mapped[str] = mapped_column(sa.String(128))
    merchant: Mapped[str] = mapped_column(sa.String(200))
    payment_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", sa.JSON)
    receipt: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    return_url: Mapped[str] = mapped_column(sa.String(2000))
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")
    paid: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    method: Mapped[str | None] = mapped_column(sa.String(40))
    card_last4: Mapped[str | None] = mapped_column(sa.String(4))
    cancellation_party: Mapped[str | None] = mapped_column(sa.String(40))
    cancellation_reason: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# --- the money ledger (DESIGN "The money ledger") -----------------------------------------------------------
# Every rouble that arrives is one Receipt; Allocations apply parts of it to orders (a negative one gives money back
# to the balance when an order can no longer be applied); Refunds send it back. What neither uses is the balance:
# received = allocated + balance + refunded holds by construction and is checked as a property in the tests.


class ReceiptMethod(TitledStrEnum):
    # Card, e-money, СБП through the payment provider (the provider's own method is on the payment).
    CARD = "card", "Карта, СБП, электронные деньги"
    BANK = "bank", "Банковский перевод"  # a payment order in an imported bank statement
    STAFF = "staff", "Банковский перевод"  # staff recorded a bank payment by hand («п/п № 512 от 25.11.2026»)
    # СБП (Faster Payments) through the payment provider: refunded through it, as card money.
    SBP = "sbp", "СБП"


# Money that came through the payment provider goes back through it (a refund to the card or by СБП).
PROVIDER_RECEIPT_METHODS = (ReceiptMethod.CARD.value, ReceiptMethod.SBP.value)


class Receipt(Base):
    """Money that arrived, recorded once (its source key is unique): what allocations and refunds leave is balance."""

    __tablename__ = "ledger_receipts"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="RESTRICT"), index=True)
    method: Mapped[str] = mapped_column(sa.String(20))
    amount: Mapped[int] = mapped_column(sa.BigInteger)  # kopecks, > 0
    received_on: Mapped[date] = mapped_column(sa.Date)  # Moscow date the money reached the seller
    # provider:payment id, bank:<payment order identity>, staff:<invoice>:<reference> — one receipt per source.
    source_key: Mapped[str] = mapped_column(sa.String(160), unique=True)
    reference: Mapped[str] = mapped_column(sa.String(200))  # «п/п № 512 от 25.11.2026», «Карта, платёж …»
    payment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("payments.id", ondelete="RESTRICT"))
    statement_line_id: Mapped[int | None] = mapped_column(sa.ForeignKey("statement_lines.id", ondelete="RESTRICT"))
    payer_name: Mapped[str | None] = mapped_column(sa.String(500))
    payer_inn: Mapped[str | None] = mapped_column(sa.String(12))
    # Why staff (and the owner) must look at this money: it arrived for something that could not take it.
    attention: Mapped[str | None] = mapped_column(sa.Text)
    attention_resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def method_title(self) -> str:
        return ReceiptMethod(self.method).title


class Allocation(Base):
    """A part of a receipt applied to an order (through its invoice where there is one); negative: given back."""

    __tablename__ = "ledger_allocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    receipt_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_receipts.id", ondelete="RESTRICT"), index=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="RESTRICT"), index=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id", ondelete="RESTRICT"), index=True)
    invoice_id: Mapped[int | None] = mapped_column(sa.ForeignKey("invoices.id", ondelete="RESTRICT"), index=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    note: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RefundStatus(TitledStrEnum):
    REQUESTED = "requested", "Запрошен"  # the owner asked; staff decide how
    PENDING = "pending", "Выполняется"  # sent to the provider / waiting for the accountant's transfer
    SUCCEEDED = "succeeded", "Выполнен"
    CANCELED = "canceled", "Отменён"  # refused or failed: the money is on the balance again


class Refund(Base):
    """Money given back from the balance: through the provider for card money, by a bank transfer for bank money."""

    __tablename__ = "ledger_refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="RESTRICT"), index=True)
    receipt_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ledger_receipts.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    method: Mapped[str | None] = mapped_column(sa.String(20))  # "card" (provider) | "bank" (transfer); None: asked
    status: Mapped[str] = mapped_column(sa.String(20), default=RefundStatus.REQUESTED.value, index=True)
    provider_refund_id: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    purpose: Mapped[str | None] = mapped_column(sa.Text)  # the transfer's purpose text for the accountant to copy
    reason: Mapped[str | None] = mapped_column(sa.Text)
    requested_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    done_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def status_title(self) -> str:
        return RefundStatus(self.status).title


class StatementImport(Base):
    """One uploaded bank statement file and what came of it."""

    __tablename__ = "statement_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_name: Mapped[str] = mapped_column(sa.String(300))
    file_sha256: Mapped[str] = mapped_column(sa.String(64), index=True)
    encoding: Mapped[str] = mapped_column(sa.String(20))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    imported_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    documents_total: Mapped[int] = mapped_column(default=0)
    incoming: Mapped[int] = mapped_column(default=0)
    matched: Mapped[int] = mapped_column(default=0)
    unmatched: Mapped[int] = mapped_column(default=0)
    duplicates: Mapped[int] = mapped_column(default=0)


class LineStatus(TitledStrEnum):
    # Recorded for a company found by the invoice it names (or its ИНН and amount).
    MATCHED = "matched", "Сопоставлен"
    UNMATCHED = "unmatched", "Не сопоставлен"  # waits for support, with the reason
    LINKED = "linked", "Привязан вручную"  # support linked it to an invoice by hand
    CREDITED = "credited", "Зачислен на баланс"  # support credited it to a company's balance
    # Support decided it is not for an invoice (refund, other contract…).
    DISMISSED = "dismissed", "Отклонён"


class StatementLine(Base):
    """An incoming payment order to the seller's account; its key makes a re-import change nothing."""

    __tablename__ = "statement_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(sa.ForeignKey("statement_imports.id"), index=True)
    # SHA-256 of the payment order's identity (date, number, payer account and ИНН, amount).
    dedup_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    doc_number: Mapped[str] = mapped_column(sa.String(40))
    doc_date: Mapped[date] = mapped_column(sa.Date)
    received_on: Mapped[date | None] = mapped_column(sa.Date)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    payer_name: Mapped[str] = mapped_column(sa.String(500))
    payer_inn: Mapped[str] = mapped_column(sa.String(12))
    payer_account: Mapped[str] = mapped_column(sa.String(20))
    purpose: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20), index=True)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    invoice_id: Mapped[int | None] = mapped_column(sa.ForeignKey("invoices.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    resolution_note: Mapped[str | None] = mapped_column(sa.Text)

    @property
    def status_title(self) -> str:
        return LineStatus(self.status).title

    @property
    def reference(self) -> str:
        """«п/п № 512 от 25.11.2026» — how the payment is named on the order and the УПД."""
        return f"п/п № {self.doc_number} от {self.doc_date:%d.%m.%Y}"

    @property
    def paid_on(self) -> date:
        return self.received_on or self.doc_date
