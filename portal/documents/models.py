"""Requisites, invoices, УПД, the files of issued documents, numbering counters."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from portal.db import Base, UTCDateTime, trigram_index, utcnow
from portal.titled_enums import TitledStrEnum, title_property


class AccountRow:
    """A row of one account's: found by its id, listed by the account's (indexed)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id"), index=True)


class Requisites(Base):
    """A customer's requisites, one set per account, printed on its invoices and УПД."""

    __tablename__ = "requisites"
    # Support finds a company by any part of its legal name (`name ILIKE '%…%'`, a trigram index on PostgreSQL).
    __table_args__ = (trigram_index("ix_requisites_name_trgm", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(3))  # "org" | "ip"
    name: Mapped[str] = mapped_column(sa.String(300))
    inn: Mapped[str] = mapped_column(sa.String(12))
    kpp: Mapped[str | None] = mapped_column(sa.String(9))
    ogrn: Mapped[str] = mapped_column(sa.String(15))  # ОГРН (13) or ОГРНИП (15)
    address: Mapped[str] = mapped_column(sa.String(500))
    email: Mapped[str] = mapped_column(sa.String(254))
    bank_name: Mapped[str | None] = mapped_column(sa.String(300))
    bik: Mapped[str | None] = mapped_column(sa.String(9))
    account_number: Mapped[str | None] = mapped_column(sa.String(20))
    correspondent_account: Mapped[str | None] = mapped_column(sa.String(20))
    edo_id: Mapped[str | None] = mapped_column(sa.String(100))
    edo_operator: Mapped[str | None] = mapped_column(sa.String(100))
    # Closing documents by e-mail to `email`: "none", "each" (every document as it is formed), "monthly" (one letter).
    mail_mode: Mapped[str] = mapped_column(sa.String(10), default="none", server_default="none")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))

    # What the accountant edits, and the names of the form's fields; a validator's own field name ("ogrnip") maps
    # onto the one input that holds it.
    FIELDS = (
        "kind",
        "name",
        "inn",
        "kpp",
        "ogrn",
        "address",
        "email",
        "bank_name",
        "bik",
        "account_number",
        "correspondent_account",
        "edo_id",
        "edo_operator",
        "mail_mode",
    )

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}


class DocumentCounter(Base):
    """The last number issued per document kind and calendar year; its row is the lock that keeps numbers gapless."""

    __tablename__ = "document_counters"

    kind: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    year: Mapped[int] = mapped_column(primary_key=True)
    last_number: Mapped[int] = mapped_column(default=0)


class StoredFile(AccountRow, Base):
    """One file in the document store: written once, read back only if its bytes still have this SHA-256."""

    __tablename__ = "stored_files"

    kind: Mapped[str] = mapped_column(sa.String(20))  # invoice_pdf | upd_pdf | upd_xml
    path: Mapped[str] = mapped_column(sa.String(300), unique=True)  # relative to DOCUMENT_STORE_PATH
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    content_type: Mapped[str] = mapped_column(sa.String(100))
    download_name: Mapped[str] = mapped_column(sa.String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InvoiceStatus(TitledStrEnum):
    ISSUED = "issued", "Ожидает оплаты"
    PAID = "paid", "Оплачен"
    CANCELED = "canceled", "Аннулирован"  # annulled with its order: the PDF stays, nothing may be paid by it any more


class UpdStatus(TitledStrEnum):
    PENDING = "pending", "Формируется"  # numbered with the payment, files not rendered yet (a retry forms them)
    FORMED = "formed", "Сформирован"


class NumberedDocument(AccountRow):
    """The columns of a document numbered from a gapless counter per calendar year and listed per account."""

    number: Mapped[str] = mapped_column(sa.String(20), unique=True)  # "2026-000001", "К-2026-000001", "А-2026-000001"
    year: Mapped[int]
    serial: Mapped[int]


class FormedDocument(NumberedDocument):
    """A document numbered in its payment's (or refund's) transaction and rendered to PDF and XML after it.

    Everything it shows is frozen in `context` when it is numbered, so a retry renders the same document.
    """

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        # The documents page walks (account_id, date, id) newest first from a page's last key.
        return (
            sa.UniqueConstraint("year", "serial"),
            sa.Index(f"ix_{cls.__tablename__}_account_date", "account_id", "doc_date", "id"),
        )

    doc_date: Mapped[date] = mapped_column(sa.Date)
    context: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(20), default=UpdStatus.PENDING.value, index=True)
    pdf_file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stored_files.id"))
    xml_file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stored_files.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    formed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)

    status_title = title_property(UpdStatus)


class Invoice(NumberedDocument, Base):
    """A счёт на оплату for one order; its number is never reused, its PDF never re-rendered."""

    __tablename__ = "invoices"
    # The documents page walks (account_id, date, id) newest first from a page's last key.
    __table_args__ = (
        sa.UniqueConstraint("year", "serial"),
        sa.Index("ix_invoices_account_issued", "account_id", "issued_on", "id"),
    )

    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"), unique=True)
    issued_on: Mapped[date] = mapped_column(sa.Date)  # Moscow date
    valid_until: Mapped[date] = mapped_column(sa.Date)
    amount: Mapped[int] = mapped_column(sa.BigInteger)  # kopecks, VAT included
    vat_rate: Mapped[int | None]
    vat_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    line_name: Mapped[str] = mapped_column(sa.String(500))
    buyer: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # the requisites as they were at issue
    purpose: Mapped[str] = mapped_column(sa.String(500))
    qr_payload: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20), default=InvoiceStatus.ISSUED.value)
    pdf_file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("stored_files.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_on: Mapped[date | None] = mapped_column(sa.Date)
    payment_reference: Mapped[str | None] = mapped_column(sa.String(200))
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(sa.Text)
    # A УПД is dated the day the rights begin, and numbers follow dates: for rights that begin later (a renewal paid
    # in advance) the УПД is numbered and formed on that day, from the payment document kept here.
    upd_due_on: Mapped[date | None] = mapped_column(sa.Date, index=True)
    upd_payment_doc: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    # "card": the record of a company's card order (requisites given at checkout), kept so that the card payment
    # forms a УПД by the same path as a transfer; it has no PDF or QR and is never offered for a bank transfer.
    paid_by: Mapped[str | None] = mapped_column(sa.String(16))

    status_title = title_property(InvoiceStatus)

    @property
    def is_open(self) -> bool:
        return self.status == InvoiceStatus.ISSUED

    @property
    def by_card(self) -> bool:
        return self.paid_by == "card"


class Upd(FormedDocument, Base):
    """The УПД formed after an invoice is paid, dated the payment date; numbered in the payment's transaction."""

    __tablename__ = "upds"

    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("invoices.id"), unique=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    vat_rate: Mapped[int | None]
    vat_amount: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class Ukd(FormedDocument, Base):
    """A УКД (корректировочный документ) after a refund of rights a УПД documented: it lowers the УПД's cost.

    Numbered from its own gapless counter in the refund's transaction and rendered after it, as a УПД is."""

    __tablename__ = "ukds"

    upd_id: Mapped[int] = mapped_column(sa.ForeignKey("upds.id"), index=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id"), index=True)
    amount_before: Mapped[int] = mapped_column(sa.BigInteger)  # the УПД's cost before this correction, VAT included
    amount_after: Mapped[int] = mapped_column(sa.BigInteger)
    vat_rate: Mapped[int | None]

    @property
    def decrease(self) -> int:
        return self.amount_before - self.amount_after


class AdvanceInvoice(FormedDocument, Base):
    """A счёт-фактура на аванс: with VAT charged, money received before the rights begin gets one within five days;
    the УПД formed when the rights begin names it on line 5б."""

    __tablename__ = "advance_invoices"

    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("invoices.id"), unique=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    vat_rate: Mapped[int]
    vat_amount: Mapped[int] = mapped_column(sa.BigInteger)


class EdoStatus(TitledStrEnum):
    PENDING = "pending", "Ожидает отправки"  # to be sent (first time, after a failure, or resent by the accountant)
    SENT = "sent", "Отправлен"
    DELIVERED = "delivered", "Доставлен"
    SIGNED = "signed", "Подписан покупателем"
    REJECTED = "rejected", "Отклонён"


class EdoDocument(AccountRow, Base):
    """The outbox of documents going to the buyer through ЭДО: one row per document, sent once, its status followed."""

    __tablename__ = "edo_documents"
    __table_args__ = (sa.UniqueConstraint("kind", "document_id"),)

    kind: Mapped[str] = mapped_column(sa.String(10))  # "upd" | "ukd"
    document_id: Mapped[int]
    number: Mapped[str] = mapped_column(sa.String(40))
    recipient_id: Mapped[str] = mapped_column(sa.String(100))  # the buyer's ЭДО participant id when queued
    recipient_operator: Mapped[str | None] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(20), default=EdoStatus.PENDING.value, index=True)
    message_id: Mapped[str | None] = mapped_column(sa.String(100))
    entity_id: Mapped[str | None] = mapped_column(sa.String(100))
    attempts: Mapped[int] = mapped_column(default=0)
    resends: Mapped[int] = mapped_column(default=0)  # the accountant's resends: each is a new message to the operator
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    reject_reason: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attention_resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    status_title = title_property(EdoStatus)


class DocumentMail(AccountRow, Base):
    """The outbox of closing documents by e-mail: a unique key per document ("upd:12") or month ("month:2026-11")."""

    __tablename__ = "document_mails"

    key: Mapped[str] = mapped_column(sa.String(80), unique=True)
    to_email: Mapped[str] = mapped_column(sa.String(254))
    status: Mapped[str] = mapped_column(sa.String(20), default="pending", index=True)  # pending | sent
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
