"""E-mailing an invoice or a УПД again to the account's address for documents, at a staff member's request."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from portal.accounts.models import User
from portal.audit import record_audit
from portal.documents import service as documents
from portal.documents.models import Invoice, StoredFile, Upd
from portal.money import format_rub
from portal.support.email import Attachment, EmailBackend, EmailError, build_message
from portal.support.errors import SupportError, clean_reason
from portal.timeutil import format_date

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DocumentToSend:
    kind: str  # "invoice" | "upd"
    id: int
    account_id: int
    number: str
    date: date
    amount: int
    files: list[StoredFile]

    @property
    def title(self) -> str:
        what = "Счёт на оплату" if self.kind == "invoice" else "УПД"
        return f"{what} № {self.number} от {format_date(self.date)}"


def get_document(db: Session, kind: str, document_id: int) -> DocumentToSend | None:
    """An invoice (its PDF) or a УПД (PDF and XML) with its stored files, for resending."""
    if kind == "invoice":
        invoice = db.get(Invoice, document_id)
        if invoice is None:
            return None
        files = [documents.get_file(db, invoice.account_id, invoice.pdf_file_id)]
        return DocumentToSend(
            "invoice",
            invoice.id,
            invoice.account_id,
            invoice.number,
            invoice.issued_on,
            invoice.amount,
            [f for f in files if f is not None],
        )
    if kind == "upd":
        upd = db.get(Upd, document_id)
        if upd is None:
            return None
        files = [documents.get_file(db, upd.account_id, fid) for fid in (upd.pdf_file_id, upd.xml_file_id)]
        return DocumentToSend(
            "upd", upd.id, upd.account_id, upd.number, upd.doc_date, upd.amount, [f for f in files if f is not None]
        )
    return None


def documents_email(db: Session, account_id: int) -> str | None:
    """The account's e-mail for documents, from its requisites."""
    req = documents.get_requisites(db, account_id)
    return req.email if req is not None and req.email else None


def resend_document(
    db: Session,
    *,
    actor: User,
    kind: str,
    document_id: int,
    reason: str | None,
    now: datetime,
    backend: EmailBackend,
    config: Mapping[str, Any],
) -> str:
    """E-mail the document's files again to the account's address for documents; returns the address. Commits."""
    reason = clean_reason(reason)
    doc = get_document(db, kind, document_id)
    if doc is None:
        raise SupportError("Документ не найден.")
    to = documents_email(db, doc.account_id)
    if to is None:
        raise SupportError("У компании не указана почта для документов: её заполняют в реквизитах.")
    if not doc.files:
        raise SupportError(f"{doc.title}: файлы ещё не сформированы, отправлять нечего. Попробуйте позже.")
    attachments = []
    for stored in doc.files:
        try:
            data = documents.read_file(stored, config)
        except Exception as exc:  # noqa: BLE001 - a missing or altered file must not be sent; say which one
            log.error("document file %s unreadable: %s", stored.path, exc)
            raise SupportError(
                f"Файл «{stored.download_name}» не прошёл проверку целостности: отправлять его нельзя. "
                "Передайте это разработчикам."
            ) from None
        attachments.append(Attachment(stored.download_name, stored.content_type, data))
    seller = str(config.get("SELLER_NAME", ""))
    body = (
        "Здравствуйте!\n\n"
        f"Направляем {doc.title[0].lower() + doc.title[1:]} на сумму {format_rub(doc.amount)}"
        " — повторно, по вашей просьбе.\n"
        f"Документы также доступны в личном кабинете в разделе «Документы».\n\n"
        f"С уважением,\n{seller}\n"
    )
    message = build_message(
        sender=str(config.get("EMAIL_FROM") or "billing@example.ru"),
        to=to,
        subject=f"{doc.title} — {seller}" if seller else doc.title,
        body=body,
        attachments=attachments,
        now=now,
    )
    try:
        backend.send(message)
    except EmailError as exc:
        raise SupportError(str(exc)) from None
    record_audit(
        db,
        actor=actor,
        account=doc.account_id,
        action="support.document_resent",
        before=None,
        after={"document": doc.title, "to": to, "files": [a.filename for a in attachments]},
        reason=reason,
    )
    db.commit()
    return to
