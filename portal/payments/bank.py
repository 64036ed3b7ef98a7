"""Bank money: the statement import, each payment order recorded once in the ledger (staff's part: statement_lines).

Every incoming payment order of a statement is accounted for: recorded for the company whose invoice it names (or
whose ИНН and amount pick out exactly one open invoice) and applied through the ledger, or listed for staff with
its reason. Nothing is dropped: a payment order that appears twice in one file is listed, not discarded, and the
sum the import recorded is checked against the statement's ВсегоПоступило.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.audit import AuditLog
from portal.documents.models import Invoice, InvoiceStatus, Requisites
from portal.documents.service import _config
from portal.documents.store import sha256_hex
from portal.documents.tasks import form_documents_task
from portal.money import format_rub
from portal.payments import ledger
from portal.payments.models import LineStatus, Receipt, ReceiptMethod, StatementImport, StatementLine
from portal.payments.statement import PaymentOrder, find_invoice_refs, incoming_for, parse_amount, parse_statement
from portal.tasks import enqueue

log = logging.getLogger(__name__)

# Keys per IN (…) look-up: well under SQLite's and PostgreSQL's limits on bound parameters.
_CHUNK = 1000


@dataclass
class ListedLine:
    """A payment order the import listed for staff, as it was inserted (in bulk, so without an ORM object each)."""

    doc_number: str
    doc_date: date
    amount: int
    payer_name: str
    reason: str | None
    status: str = LineStatus.UNMATCHED.value
    id: int | None = None  # set once its batch is written

    @property
    def reference(self) -> str:
        return f"п/п № {self.doc_number} от {self.doc_date:%d.%m.%Y}"


@dataclass
class ImportResult:
    import_id: int | None
    documents_total: int
    incoming: int
    matched: list[StatementLine] = field(default_factory=list)
    unmatched: list[ListedLine] = field(default_factory=list)
    duplicates: int = 0
    recorded: int = 0  # kopecks of the payment orders this file holds for us, new and already imported
    declared: int | None = None  # the statement's own ВсегоПоступило for our account
    warning: str | None = None

    @property
    def summary(self) -> str:
        text = (
            f"Документов в выписке: {self.documents_total}, поступлений на наш счёт: {self.incoming}; "
            f"сопоставлено: {len(self.matched)}, не сопоставлено: {len(self.unmatched)}, "
            f"уже загружено ранее: {self.duplicates}."
        )
        return f"{text} {self.warning}" if self.warning else text


def dedup_key(doc: PaymentOrder, occurrence: int = 1) -> str:
    """A payment order's identity across statements: its date, number, payer's account and ИНН, and amount; the
    second identical order within one file is a line of its own (`occurrence`), listed for staff, never dropped."""
    parts = [doc.date.isoformat(), doc.number.strip(), "".join(doc.payer_account.split()), doc.payer_inn.strip()]
    parts.append(str(doc.amount_kopecks))
    if occurrence > 1:
        parts.append(f"#{occurrence}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass
class Match:
    """Whom a payment order pays: the invoices it names (in the order named), and why not, or how it was found."""

    invoices: list[Invoice] = field(default_factory=list)
    reason: str | None = None  # why nothing could be matched (for staff)
    note: str | None = None  # how it was matched, when not by a full invoice number


def _invoice_id(invoice: Invoice) -> int:
    return invoice.id


class _Lookups:
    """What one import reads once, so 10 000 payment orders do not ask the same questions 10 000 times.

    The invoices the purposes name, and which payers' ИНН belong to the portal's companies (most payers of a bank
    account are not customers), are read in chunks of the whole file; the open invoices of the customers, with what
    each still needs, once, filed by (ИНН, what it still needs): a payer with many open invoices (or a statement of
    thousands of his payments) then costs one dict look-up per payment, not a scan of his invoices. Money the import
    applies changes only the invoices it paid (their remaining and status, which the session's objects show), so
    the import refreshes those and nothing else.
    """

    def __init__(self, db: Session, docs: Sequence[PaymentOrder]) -> None:
        self.db = db
        self._refs: dict[str, list[tuple[int | None, int]]] = {}
        serials: set[int] = set()
        inns: set[str] = set()
        for doc in docs:
            serials.update(serial for _, serial in self.refs(doc.purpose))
            if inn := doc.payer_inn.strip():
                inns.add(inn)
        self._by_serial: dict[int, list[Invoice]] = {}
        wanted = sorted(serials)
        for start in range(0, len(wanted), _CHUNK):
            for invoice in db.scalars(
                sa.select(Invoice).where(Invoice.serial.in_(wanted[start : start + _CHUNK])).order_by(Invoice.id)
            ):
                self._by_serial.setdefault(invoice.serial, []).append(invoice)
        # Open invoices of the companies whose requisites carry the payer's ИНН, issued to that ИНН (the buyer
        # block is the requisites as they were at issue).
        opened: list[tuple[Invoice, str]] = []
        customers = sorted(inns)
        for start in range(0, len(customers), _CHUNK):
            rows = db.execute(
                sa.select(Invoice, Requisites.inn)
                .join(Requisites, Requisites.account_id == Invoice.account_id)
                .where(
                    Requisites.inn.in_(customers[start : start + _CHUNK]),
                    Invoice.status == InvoiceStatus.ISSUED.value,
                    Invoice.paid_by.is_(None),  # a card order's record is never paid by transfer
                )
                .order_by(Invoice.id)
            ).all()
            opened += [(invoice, inn) for invoice, inn in rows if invoice.buyer.get("inn") == inn]
        paid = ledger.invoices_paid_amounts(db, [i.id for i, _ in opened])
        self._inn: dict[int, str] = {}
        self._remaining: dict[int, int] = {}
        self._needing: dict[tuple[str, int], list[Invoice]] = {}
        for invoice, inn in opened:
            self._inn[invoice.id] = inn
            self._file(invoice, max(invoice.amount - paid.get(invoice.id, 0), 0))

    def _file(self, invoice: Invoice, remaining: int) -> None:
        self._remaining[invoice.id] = remaining
        bisect.insort(self._needing.setdefault((self._inn[invoice.id], remaining), []), invoice, key=_invoice_id)

    def refs(self, purpose: str) -> list[tuple[int | None, int]]:
        found = self._refs.get(purpose)
        if found is None:
            found = self._refs[purpose] = find_invoice_refs(purpose)
        return found

    def invoices_by_ref(self, year: int | None, serial: int) -> list[Invoice]:
        return [i for i in self._by_serial.get(serial, ()) if year is None or i.year == year]

    def open_invoices_needing(self, inn: str, amount: int) -> list[Invoice]:
        """The open invoices issued to this ИНН that still need exactly `amount`, oldest first."""
        return [
            i for i in self._needing.get((inn, amount), ()) if i.status == InvoiceStatus.ISSUED and i.paid_by is None
        ]

    def money_applied(self, invoices: Sequence[Invoice]) -> None:
        for invoice in invoices:
            remaining = self._remaining.get(invoice.id)
            if remaining is not None:
                self._needing[(self._inn[invoice.id], remaining)].remove(invoice)
                self._file(invoice, ledger.invoice_remaining(self.db, invoice))


def match_payment(db: Session, doc: PaymentOrder, lookups: _Lookups | None = None) -> Match:
    """The invoices this payment pays: by the numbers in its purpose (also as accountants write them: «сч.17»,
    «2026/17», «№2026 000017»), else by the payer's ИНН and the amount when they pick out exactly one open invoice."""
    if lookups is None:
        lookups = _Lookups(db, [doc])
    payer_inn = doc.payer_inn.strip()
    reasons: list[str] = []
    named: list[Invoice] = []
    for year, serial in lookups.refs(doc.purpose):
        candidates = lookups.invoices_by_ref(year, serial)
        shown = f"{year}-{serial:06d}" if year else str(serial)
        if len(candidates) > 1:
            candidates = [i for i in candidates if i.buyer.get("inn") == payer_inn]
        if not candidates:
            reasons.append(f"счёт № {shown} не найден")
            continue
        if len(candidates) > 1:
            reasons.append(f"счёт № {shown} неоднозначен: таких счетов несколько")
            continue
        invoice = candidates[0]
        buyer_inn = invoice.buyer.get("inn", "")
        if payer_inn != buyer_inn:
            reasons.append(
                f"ИНН плательщика ({payer_inn or 'не указан'}) не совпадает с ИНН покупателя "
                f"по счёту № {invoice.number} ({buyer_inn})"
            )
            continue
        if invoice not in named:
            named.append(invoice)
    if named:
        return Match(named)
    if payer_inn:
        fitting = lookups.open_invoices_needing(payer_inn, doc.amount_kopecks)
        if len(fitting) == 1:
            invoice = fitting[0]
            return Match(
                [invoice],
                note=(
                    f"Номер счёта не распознан; сопоставлен со счётом № {invoice.number} по ИНН плательщика "
                    f"и сумме {format_rub(doc.amount_kopecks)}"
                ),
            )
    if not reasons:
        reasons.append("в назначении платежа нет номера счёта, а по ИНН и сумме счёт однозначно не найден")
    return Match(reason=_capital("; ".join(reasons)))


def receipt_for_line(db: Session, line: StatementLine, account_id: int, *, method: str, actor: Any, now: datetime):
    receipt, _ = ledger.record_receipt(
        db,
        account_id=account_id,
        method=method,
        amount=line.amount,
        received_on=line.paid_on,
        source_key=f"bank:{line.dedup_key}",
        reference=line.reference,
        statement_line_id=line.id,
        payer_name=line.payer_name,
        payer_inn=line.payer_inn,
        actor=actor,
        now=now,
    )
    return receipt


def _payment_doc(line: StatementLine) -> dict[str, Any]:
    return {"number": line.doc_number, "date": line.doc_date, "amount": line.amount}


def apply_line(
    db: Session,
    line: StatementLine,
    invoices: list[Invoice],
    *,
    actor: Any,
    now: datetime,
    config: Mapping[str, Any],
    note: str | None,
) -> tuple[Receipt, list[int]]:
    """Record the line's money for the company of the invoices and apply it; the line says what happened."""
    receipt = receipt_for_line(db, line, invoices[0].account_id, method=ReceiptMethod.BANK.value, actor=actor, now=now)
    results, left = ledger.pay_invoices(
        db, receipt, invoices, now=now, config=config, actor=actor, payment_doc=_payment_doc(line)
    )
    said: list[str] = [note] if note else []
    for invoice, step in zip(invoices, results, strict=False):
        if step.problem is not None:
            said.append(f"по счёту № {invoice.number} не применено ({step.problem}), деньги на балансе компании")
        elif step.completed:
            said.append(f"счёт № {invoice.number} оплачен")
        elif step.amount:
            due = ledger.invoice_remaining(db, invoice)
            said.append(f"по счёту № {invoice.number} оплачено {format_rub(step.amount)}, осталось {format_rub(due)}")
    if left > 0 and all(s.problem is None for s in results):
        said.append(f"на баланс компании {format_rub(left)}")
    line.invoice_id = invoices[0].id
    line.reason = _capital("; ".join(said)) if said else None
    return receipt, [s.upd_id for s in results if s.upd_id is not None]


@contextmanager
def _audit_records_held(db: Session) -> Iterator[None]:
    """The audit records of what an import applies, inserted together at its end instead of one INSERT (and one
    flush) each: a statement paying 100 invoices records about 400, four per payment. They stay in the import's
    transaction and keep the order they were recorded in; nothing in the ledger's path reads the audit log."""
    held: list[AuditLog] = []

    def hold(session: Session, *_: Any) -> None:
        pending = sorted(
            (entry for entry in session.new if isinstance(entry, AuditLog)), key=lambda e: sa.inspect(e).insert_order
        )
        for entry in pending:
            session.expunge(entry)
        held.extend(pending)

    sa.event.listen(db, "before_flush", hold)
    try:
        yield
        hold(db)
    finally:
        sa.event.remove(db, "before_flush", hold)
    if held:
        # Core's executemany with every column in every row: the ORM's bulk path would group rows by which values
        # are NULL, and so could reorder them.
        table = AuditLog.__table__
        columns = [c.key for c in table.columns if not c.primary_key]
        db.connection().execute(table.insert(), [{key: getattr(entry, key) for key in columns} for entry in held])


def _declared_total(statement: Any, account: str) -> int | None:
    for section in statement.account_sections:
        if "".join(section.get("РасчСчет", "").split()) == account and section.get("ВсегоПоступило"):
            try:
                return parse_amount(section["ВсегоПоступило"])
            except ValueError:
                return None
    return None


def _recorded_keys(db: Session, keys: list[str]) -> set[str]:
    """Which of these payment identities are recorded already. On PostgreSQL one query with the keys as one array
    (= ANY): psycopg parses a statement's placeholders on the client, which for IN (…) of 1000 keys each cost more
    than the look-up itself; elsewhere one IN (…) per chunk."""
    column = StatementLine.dedup_key
    if db.get_bind().dialect.name == "postgresql":
        wanted = sa.bindparam("keys", type_=postgresql.ARRAY(column.type))
        return set(db.scalars(sa.select(column).where(column == sa.any_(wanted)), {"keys": keys}))
    known: set[str] = set()
    for start in range(0, len(keys), _CHUNK):
        known.update(db.scalars(sa.select(column).where(column.in_(keys[start : start + _CHUNK]))))
    return known


def _import_once(
    db: Session,
    data: bytes,
    *,
    file_name: str,
    actor: Any | None,
    now: datetime,
    config: Mapping[str, Any],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[ImportResult, list[int]]:
    statement = parse_statement(data)  # a broken file raises StatementError here, before anything is written
    seller_account = "".join(str(config["SELLER_ACCOUNT"]).split())
    incoming = incoming_for(statement, seller_account, str(config.get("SELLER_INN") or ""))
    result = ImportResult(None, len(statement.documents), len(incoming))
    result.declared = _declared_total(statement, seller_account)
    upd_ids: list[int] = []
    occurrences: dict[str, int] = {}
    keyed = []
    for doc in incoming:
        base = dedup_key(doc)
        occurrences[base] = occurrences.get(base, 0) + 1
        keyed.append((doc, dedup_key(doc, occurrences[base]) if occurrences[base] > 1 else base, occurrences[base]))
        result.recorded += doc.amount_kopecks
    # What is already recorded, one SELECT per chunk of the file: a re-import learns here that nothing is new
    # and writes nothing at all.
    known = _recorded_keys(db, [k for _, k, _ in keyed])
    fresh = [(doc, key, occurrence) for doc, key, occurrence in keyed if key not in known]
    result.duplicates = len(keyed) - len(fresh)
    if not fresh:
        _warn_if_incomplete(result)
        return result, upd_ids
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
    lookups = _Lookups(db, [doc for doc, _, occurrence in fresh if occurrence == 1])
    # Lines that pay nothing are inserted together, with their reason, in one statement per batch; a line that pays
    # is inserted on its own (its receipt needs its id) after the batch before it, so ids keep the file's order.
    batch: list[dict[str, Any]] = []
    listed: list[ListedLine] = []

    def write_batch() -> None:
        if batch:
            # One multi-row INSERT … RETURNING per batch (SQLAlchemy's "insertmanyvalues"); the ids come back with
            # their keys (SQLite keeps the rows' order only one row per statement).
            # Core's insert on the session's connection: the ORM's bulk path would look at every row dict again.
            table = StatementLine.__table__
            ids = dict(db.connection().execute(table.insert().returning(table.c.dedup_key, table.c.id), batch).all())
            for line, row in zip(listed, batch, strict=True):
                line.id = ids[row["dedup_key"]]
            batch.clear()
            listed.clear()

    with _audit_records_held(db):
        for number, (doc, key, occurrence) in enumerate(fresh):
            if progress is not None and number % 100 == 0:
                progress(number, len(fresh))
            row: dict[str, Any] = {
                "import_id": imp.id,
                "dedup_key": key,
                "doc_number": doc.number[:40],
                "doc_date": doc.date,
                "received_on": doc.received_date,
                "amount": doc.amount_kopecks,
                "payer_name": doc.payer_name[:500],
                "payer_inn": doc.payer_inn[:12],
                "payer_account": "".join(doc.payer_account.split())[:20],
                "purpose": doc.purpose,
                "status": LineStatus.UNMATCHED.value,
                "reason": None,
                "created_at": now,
            }
            if occurrence > 1:
                # Two identical payment orders in one file: a bank's export error or two real transfers; staff decide.
                row["reason"] = (
                    f"Такой же платёжный документ (№ {doc.number} от {doc.date:%d.%m.%Y}, {format_rub(doc.amount_kopecks)}) "
                    f"встречается в выписке {occurrence}-й раз: проверьте по банку, два ли это платежа"
                )
            else:
                match = match_payment(db, doc, lookups)
                if match.invoices:
                    write_batch()
                    line = StatementLine(**row)
                    db.add(line)
                    db.flush()
                    _, ids = apply_line(db, line, match.invoices, actor=actor, now=now, config=config, note=match.note)
                    lookups.money_applied(match.invoices)
                    upd_ids.extend(ids)
                    line.status = LineStatus.MATCHED.value
                    result.matched.append(line)
                    continue
                row["reason"] = match.reason
            batch.append(row)
            listed.append(
                ListedLine(row["doc_number"], row["doc_date"], row["amount"], row["payer_name"], row["reason"])
            )
            result.unmatched.append(listed[-1])
            if len(batch) >= _CHUNK:
                write_batch()
        write_batch()
    imp.matched = len(result.matched)
    imp.unmatched = len(result.unmatched)
    imp.duplicates = result.duplicates
    db.flush()
    _warn_if_incomplete(result)
    return result, upd_ids


def _warn_if_incomplete(result: ImportResult) -> None:
    if result.declared is not None and result.declared != result.recorded:
        result.warning = (
            f"Внимание: по выписке на наш счёт поступило {format_rub(result.declared)} (ВсегоПоступило), "
            f"а платёжных документов на наш счёт в ней на {format_rub(result.recorded)}: "
            "выписка неполная или в ней есть документы без нашего счёта получателя — сверьте с банком."
        )


def import_statement(
    db: Session,
    data: bytes,
    *,
    file_name: str,
    actor: Any | None,
    now: datetime,
    config: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import a 1CClientBankExchange file in one transaction, then hand the УПД it numbered to the queue. Commits.

    `progress(done, total)` hears how many payment orders are through (a task run shows it).

    A malformed file raises StatementError (line number and what is wrong) and nothing is imported. Payments
    already imported (from this file or another statement) are skipped, so importing again changes nothing.
    """
    cfg = _config(config)
    for attempt in (1, 2):
        try:
            result, upd_ids = _import_once(
                db, data, file_name=file_name, actor=actor, now=now, config=cfg, progress=progress
            )
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
    if result.matched:
        # The import numbers the УПД (and an advance invoice for money ahead of the rights) in its transaction;
        # rendering them (about a second each) is the queue's work, never the import's: a statement paying 100
        # invoices would otherwise hold its run for minutes.
        enqueue(form_documents_task, list(upd_ids))
    log.info("statement %s imported: %s", file_name, result.summary)
    return result
