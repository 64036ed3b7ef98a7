"""Bank-statement import: each incoming payment order is matched to an open invoice or kept for support with a reason."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.billing.models import Order, OrderStatus
from portal.documents.invoices import DocumentsError
from portal.documents.models import Invoice, InvoiceStatus, LineStatus, StatementImport, StatementLine
from portal.documents.service import _config, form_upds_now, pay_invoice
from portal.documents.store import sha256_hex
from portal.money import format_rub
from portal.payments.statement import PaymentOrder, find_invoice_numbers, incoming_for, parse_statement

log = logging.getLogger(__name__)


@dataclass
class ImportResult:
    import_id: int | None
    documents_total: int
    incoming: int
    matched: list[StatementLine] = field(default_factory=list)
    unmatched: list[StatementLine] = field(default_factory=list)
    duplicates: int = 0

    @property
    def summary(self) -> str:
        return (
            f"Документов в выписке: {self.documents_total}, поступлений на наш счёт: {self.incoming}; "
            f"оплачено счетов: {len(self.matched)}, не сопоставлено: {len(self.unmatched)}, "
            f"уже загружено ранее: {self.duplicates}."
        )


def dedup_key(doc: PaymentOrder) -> str:
    """A payment order's identity across statements: its date, number, payer's account and ИНН, and amount."""
    parts = [doc.date.isoformat(), doc.number.strip(), "".join(doc.payer_account.split()), doc.payer_inn.strip()]
    return hashlib.sha256("|".join([*parts, str(doc.amount_kopecks)]).encode()).hexdigest()


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def match_payment(db: Session, doc: PaymentOrder) -> tuple[Invoice | None, str | None]:
    """The open invoice this payment pays exactly (number in the purpose, payer's ИНН, amount), or why none."""
    numbers = find_invoice_numbers(doc.purpose)
    if not numbers:
        return None, "В назначении платежа нет номера счёта"
    # Locked, so that two statements paying the same invoice at once queue here and the second sees it paid.
    invoices = {
        i.number: i
        for i in db.scalars(
            sa.select(Invoice)
            .where(Invoice.number.in_(numbers))
            .order_by(Invoice.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    reasons: list[str] = []
    for number in numbers:
        invoice = invoices.get(number)
        if invoice is None:
            reasons.append(f"счёт № {number} не найден")
            continue
        order = db.get(Order, invoice.order_id)
        buyer_inn = invoice.buyer.get("inn", "")
        if invoice.status == InvoiceStatus.PAID:
            reasons.append(f"счёт № {number} уже оплачен ({invoice.payment_reference})")
        elif invoice.status == InvoiceStatus.CANCELED:
            reasons.append(f"счёт № {number} отменён")
        elif order is not None and order.status == OrderStatus.PAID:
            reasons.append(f"заказ по счёту № {number} уже оплачен другим способом")
        elif doc.payer_inn.strip() != buyer_inn:
            shown = doc.payer_inn.strip() or "не указан"
            reasons.append(f"ИНН плательщика ({shown}) не совпадает с ИНН покупателя по счёту № {number} ({buyer_inn})")
        elif doc.amount_kopecks < invoice.amount:
            reasons.append(
                f"недоплата по счёту № {number}: к оплате {format_rub(invoice.amount)}, "
                f"поступило {format_rub(doc.amount_kopecks)}, не хватает {format_rub(invoice.amount - doc.amount_kopecks)}"
            )
        elif doc.amount_kopecks > invoice.amount:
            reasons.append(
                f"переплата по счёту № {number}: к оплате {format_rub(invoice.amount)}, "
                f"поступило {format_rub(doc.amount_kopecks)}, лишние {format_rub(doc.amount_kopecks - invoice.amount)}"
            )
        else:
            return invoice, None
    return None, _capital("; ".join(reasons))


def _import_once(
    db: Session, data: bytes, *, file_name: str, actor: Any | None, now: datetime, config: Mapping[str, Any]
) -> tuple[ImportResult, list[int]]:
    statement = parse_statement(data)  # a broken file raises StatementError here, before anything is written
    incoming = incoming_for(statement, str(config["SELLER_ACCOUNT"]))
    result = ImportResult(None, len(statement.documents), len(incoming))
    imp = StatementImport(
        file_name=file_name[:300],
        file_sha256=sha256_hex(data),
        encoding=statement.encoding,
        imported_at=now,
        imported_by_user_id=actor.id if actor is not None else None,
        documents_total=len(statement.documents),
        incoming=len(incoming),
    )
    db.add(imp)
    db.flush()
    result.import_id = imp.id
    upd_ids: list[int] = []
    seen: set[str] = set()
    for doc in incoming:
        key = dedup_key(doc)
        if key in seen or db.scalar(sa.select(StatementLine.id).where(StatementLine.dedup_key == key)) is not None:
            result.duplicates += 1
            continue
        seen.add(key)
        line = StatementLine(
            import_id=imp.id,
            dedup_key=key,
            doc_number=doc.number[:40],
            doc_date=doc.date,
            received_on=doc.received_date,
            amount=doc.amount_kopecks,
            payer_name=doc.payer_name[:500],
            payer_inn=doc.payer_inn[:12],
            payer_account="".join(doc.payer_account.split())[:20],
            purpose=doc.purpose,
            status=LineStatus.UNMATCHED.value,
            created_at=now,
        )
        db.add(line)
        db.flush()
        invoice, reason = match_payment(db, doc)
        if invoice is not None:
            try:
                upd = pay_invoice(
                    db,
                    invoice,
                    actor=actor,
                    paid_on=line.paid_on,
                    reference=line.reference,
                    payment_doc={"number": line.doc_number, "date": line.doc_date, "amount": line.amount},
                    now=now,
                    config=config,
                )
            except DocumentsError as exc:
                # Paid a moment ago by another path (card, support, a parallel import): it checks before changing.
                reason = str(exc).rstrip(".")
            else:
                upd_ids.append(upd.id)
                line.status = LineStatus.MATCHED.value
                line.invoice_id = invoice.id
                result.matched.append(line)
        if line.status == LineStatus.UNMATCHED:
            line.reason = reason
            result.unmatched.append(line)
    imp.matched = len(result.matched)
    imp.unmatched = len(result.unmatched)
    imp.duplicates = result.duplicates
    if not seen:
        # Nothing new in the file (a re-import): leave no trace at all.
        db.rollback()
        result.import_id = None
    return result, upd_ids


def import_statement(
    db: Session,
    data: bytes,
    *,
    file_name: str,
    actor: Any | None,
    now: datetime,
    config: Mapping[str, Any] | None = None,
) -> ImportResult:
    """Import a 1CClientBankExchange file in one transaction, then form the УПД of the invoices it paid. Commits.

    A malformed file raises StatementError (line number and what is wrong) and nothing is imported. Payments
    already imported (from this file or another statement) are skipped, so importing again changes nothing.
    """
    cfg = _config(config)
    for attempt in (1, 2):
        try:
            result, upd_ids = _import_once(db, data, file_name=file_name, actor=actor, now=now, config=cfg)
            db.commit()
            break
        except IntegrityError:
            # The same statement imported at the same moment elsewhere: the second pass finds its lines imported.
            db.rollback()
            if attempt == 2:
                raise
        except BaseException:
            db.rollback()
            raise
    form_upds_now(db, upd_ids, now=now, config=cfg)
    log.info("statement %s imported: %s", file_name, result.summary)
    return result
