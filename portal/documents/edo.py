"""ЭДО outbox: each formed УПД (later УКД) goes once to the buyer's operator, signed; its docflow is followed.

`edo_documents` holds one row per document (unique kind + id). `send_one` is idempotent: a row already sent is left
alone, and the operator is given a stable CustomDocumentId per (document, resend), so a retry after a lost answer
cannot post it twice. `sweep` queues what is newly formed, sends what is due and reads the statuses of what is out;
the task queue (or `flask documents edo-sweep`, or cron) runs it on any number of servers at once (SKIP LOCKED).
The sender is generic over (kind, XML bytes, file name): a kind is one loader in `LOADERS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit import record_audit
from portal.documents.edo_client import EdoClient, EdoTransportError, Signer, client_from_config, signer_from_config
from portal.documents.models import EdoDocument, EdoStatus, Requisites, StoredFile, Ukd, Upd, UpdStatus
from portal.documents.requisites import EDO_OPERATORS
from portal.documents.seller import get_seller
from portal.documents.store import StoreError, get_store
from portal.documents.upd import thaw

log = logging.getLogger(__name__)

# Seconds to wait after the 1st, 2nd, … failure; the last repeats.
RETRY_DELAYS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)
OUT_STATUSES = (EdoStatus.SENT.value, EdoStatus.DELIVERED.value)


class EdoError(ValueError):
    """What the accountant asked cannot be done; the message is for them."""


@dataclass(frozen=True)
class Outgoing:
    """One document as the operator gets it."""

    number: str
    file_name: str
    xml: bytes
    type_named_id: str  # Diadoc's document type


def _loader(model: Any, type_named_id: str) -> Callable[[Session, int, Mapping[str, Any]], Outgoing | None]:
    def load(db: Session, document_id: int, config: Mapping[str, Any]) -> Outgoing | None:
        doc = db.get(model, document_id)
        if doc is None or doc.status != UpdStatus.FORMED or doc.xml_file_id is None:
            return None
        stored = db.get(StoredFile, doc.xml_file_id)
        assert stored is not None
        return Outgoing(
            doc.number, stored.download_name, get_store(config).read(stored.path, stored.sha256), type_named_id
        )

    return load


# kind → (model, loader): the УПД and the УКД that corrects one travel the same way, each as its Diadoc type.
MODELS: dict[str, Any] = {"upd": Upd, "ukd": Ukd}
LOADERS: dict[str, Callable[[Session, int, Mapping[str, Any]], Outgoing | None]] = {
    "upd": _loader(Upd, "UniversalTransferDocument"),
    "ukd": _loader(Ukd, "UniversalCorrectionDocument"),
}
KIND_TITLES = {"upd": "УПД", "ukd": "УКД"}


def _outbox_row(kind: str, document_id: int) -> sa.Select[tuple[EdoDocument]]:
    return sa.select(EdoDocument).where(EdoDocument.kind == kind, EdoDocument.document_id == document_id)


def enqueue(db: Session, kind: str, doc: Upd | Ukd, *, recipient_id: str, now: datetime) -> EdoDocument:
    """The document's outbox row, created once (a savepoint absorbs another server creating it at the same time)."""
    existing = db.scalars(_outbox_row(kind, doc.id)).first()
    if existing is not None:
        return existing
    requisites = db.scalars(sa.select(Requisites).where(Requisites.account_id == doc.account_id)).first()
    operator = (requisites.edo_operator if requisites is not None else None) or EDO_OPERATORS.get(recipient_id[:3])
    row = EdoDocument(
        account_id=doc.account_id,
        kind=kind,
        document_id=doc.id,
        number=doc.number,
        recipient_id=recipient_id,
        recipient_operator=operator,
        status=EdoStatus.PENDING.value,
        created_at=now,
    )
    try:
        with db.begin_nested():
            db.add(row)
    except sa.exc.IntegrityError:
        return db.scalars(_outbox_row(kind, doc.id)).one()
    return row


def enqueue_formed_upds(db: Session, *, now: datetime, limit: int = 200) -> int:
    """Queue every formed УПД and УКД whose buyer gave an ЭДО id (on the invoice it pays) and that is not queued."""
    count = 0
    for kind, model in MODELS.items():
        queued = sa.select(EdoDocument.document_id).where(EdoDocument.kind == kind)
        rows = db.scalars(
            sa.select(model)
            .join(Requisites, Requisites.account_id == model.account_id)
            .where(model.status == UpdStatus.FORMED.value, Requisites.edo_id.is_not(None), model.id.not_in(queued))
            .order_by(model.id)
            .limit(limit)
        ).all()
        for doc in rows:
            # The XML names the participant id the invoice was issued to; a document made without one is not sent.
            ctx = thaw(doc.context)
            recipient = (ctx.get("edo") or {}).get("recipient_id")
            if not recipient or recipient == (ctx.get("buyer") or {}).get("inn"):
                continue  # the XML names the buyer by ИНН: made before the buyer gave an ЭДО id
            enqueue(db, kind, doc, recipient_id=recipient, now=now)
            count += 1
    return count


def _lock(db: Session, row_id: int) -> EdoDocument | None:
    query = sa.select(EdoDocument).where(EdoDocument.id == row_id)
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return db.scalars(query.execution_options(populate_existing=True)).first()


def _seller_id(config: Mapping[str, Any]) -> str:
    return get_seller(config).edo_id


def send_one(
    db: Session,
    row_id: int,
    *,
    now: datetime,
    config: Mapping[str, Any],
    client: EdoClient | None = None,
    signer: Signer | None = None,
    instance_path: str = ".",
) -> EdoDocument | None:
    """Send one queued document if it is still due; a failure is noted with the next attempt's time. No commit."""
    row = _lock(db, row_id)
    if row is None or row.status != EdoStatus.PENDING:
        return row  # another server has it, or it is out already
    client = client or client_from_config(config, _seller_id(config))
    if client is None:
        return row
    signer = signer or signer_from_config(config, instance_path)
    try:
        loader = LOADERS[row.kind]
        outgoing = loader(db, row.document_id, config)
        if outgoing is None:
            raise EdoTransportError("документ ещё не сформирован")
        signature = signer.sign(outgoing.xml)
        posted = client.post_document(
            recipient_id=row.recipient_id,
            type_named_id=outgoing.type_named_id,
            file_name=outgoing.file_name,
            content=outgoing.xml,
            signature=signature,
            custom_id=f"{row.kind}-{row.document_id}-{row.resends}",
        )
    except (EdoTransportError, StoreError) as exc:
        row.attempts += 1
        row.last_error = str(exc)[:2000]
        row.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS[min(row.attempts, len(RETRY_DELAYS)) - 1])
        log.warning("ЭДО: %s № %s not sent (attempt %s): %s", row.kind, row.number, row.attempts, exc)
        return row
    row.status = EdoStatus.SENT.value
    row.message_id, row.entity_id = posted.message_id, posted.entity_id
    row.sent_at = row.status_at = now
    row.last_error = None
    row.next_attempt_at = None
    record_audit(
        db,
        actor=None,
        account=row.account_id,
        action="documents.edo_sent",
        before=None,
        after={"kind": row.kind, "number": row.number, "recipient": row.recipient_id, "message_id": posted.message_id},
    )
    return row


def send_pending(
    db: Session, *, now: datetime, config: Mapping[str, Any], instance_path: str = ".", limit: int = 50, **kw: Any
) -> list[str]:
    """Send every queued document that is due, each committed on its own."""
    due = db.scalars(
        sa.select(EdoDocument.id)
        .where(
            EdoDocument.status == EdoStatus.PENDING.value,
            sa.or_(EdoDocument.next_attempt_at.is_(None), EdoDocument.next_attempt_at <= now),
        )
        .order_by(EdoDocument.id)
        .limit(limit)
    ).all()
    done: list[str] = []
    for row_id in due:
        row = send_one(db, row_id, now=now, config=config, instance_path=instance_path, **kw)
        if row is not None:
            title = f"{KIND_TITLES.get(row.kind, row.kind)} № {row.number}"
            done.append(f"{title}: {row.status_title.lower()}" + (f" ({row.last_error})" if row.last_error else ""))
        db.commit()
    return done


def poll_statuses(
    db: Session, *, now: datetime, config: Mapping[str, Any], client: EdoClient | None = None, limit: int = 100
) -> list[str]:
    """Read the docflow of documents out with the operator; a rejection is recorded for staff with its reason."""
    ids = db.scalars(
        sa.select(EdoDocument.id).where(EdoDocument.status.in_(OUT_STATUSES)).order_by(EdoDocument.id).limit(limit)
    ).all()
    if not ids:
        return []
    client = client or client_from_config(config, _seller_id(config))
    if client is None:
        return []
    changed: list[str] = []
    for row_id in ids:
        row = _lock(db, row_id)
        if row is None or row.status not in OUT_STATUSES or not row.message_id or not row.entity_id:
            continue
        try:
            state = client.docflow_state(message_id=row.message_id, entity_id=row.entity_id)
        except EdoTransportError as exc:
            log.warning("ЭДО: status of %s № %s not read: %s", row.kind, row.number, exc)
            db.rollback()
            continue
        if state.status != row.status:
            before = row.status
            row.status = state.status
            row.status_at = now
            if state.status == EdoStatus.REJECTED:
                row.reject_reason = (state.reason or "Причина не указана")[:2000]
                row.attention_resolved_at = None
            record_audit(
                db,
                actor=None,
                account=row.account_id,
                action="documents.edo_rejected" if state.status == EdoStatus.REJECTED else "documents.edo_status",
                before={"number": row.number, "status": before},
                after={"number": row.number, "status": row.status},
                reason=row.reject_reason if state.status == EdoStatus.REJECTED else None,
            )
            changed.append(f"{KIND_TITLES.get(row.kind, row.kind)} № {row.number}: {row.status_title.lower()}")
        db.commit()
    return changed


def sweep(db: Session, *, now: datetime, config: Mapping[str, Any], instance_path: str = ".", **kw: Any) -> list[str]:
    """Everything ЭДО needs done now: queue new documents, send what is due, follow what is out. Commits."""
    queued = enqueue_formed_upds(db, now=now)
    db.commit()
    lines = [f"В очередь ЭДО: {queued}"] if queued else []
    lines += send_pending(db, now=now, config=config, instance_path=instance_path, **kw)
    lines += poll_statuses(db, now=now, config=config, client=kw.get("client"))
    return lines


# --- the accountant and staff -----------------------------------------------------------------------------------


def statuses_for(
    db: Session, account_id: int, document_ids: Iterable[int] | None = None
) -> dict[tuple[str, int], EdoDocument]:
    """The ЭДО rows of the account (or only of these document ids: a page of the documents list)."""
    q = sa.select(EdoDocument).where(EdoDocument.account_id == account_id)
    if document_ids is not None:
        ids = sorted(set(document_ids))
        if not ids:
            return {}
        q = q.where(EdoDocument.document_id.in_(ids))
    rows = db.scalars(q)
    return {(row.kind, row.document_id): row for row in rows}


def request_resend(db: Session, account_id: int, row_id: int, *, actor: Any, now: datetime) -> EdoDocument | None:
    """The accountant sends a rejected (or stuck) document again: a new message once the sweep runs. None: no such
    document of this account. No commit."""
    row = db.scalars(
        sa.select(EdoDocument).where(EdoDocument.id == row_id, EdoDocument.account_id == account_id).with_for_update()
    ).first()
    if row is None:
        return None
    if row.status in (EdoStatus.SENT, EdoStatus.DELIVERED):
        raise EdoError(f"УПД № {row.number} уже у покупателя: дождитесь его подписи или отказа.")
    if row.status == EdoStatus.SIGNED:
        raise EdoError(f"УПД № {row.number} уже подписан покупателем.")
    before = row.status
    if row.status == EdoStatus.REJECTED:
        row.resends += 1
        row.message_id = row.entity_id = None
        row.attention_resolved_at = now
    requisites = db.scalars(sa.select(Requisites).where(Requisites.account_id == account_id)).first()
    if requisites is not None and requisites.edo_id:
        row.recipient_id = requisites.edo_id  # the buyer may have corrected their id after a rejection
        row.recipient_operator = requisites.edo_operator or EDO_OPERATORS.get(requisites.edo_id[:3])
    row.status = EdoStatus.PENDING.value
    row.next_attempt_at = None
    row.attempts = 0
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="documents.edo_resend",
        before={"number": row.number, "status": before},
        after={"number": row.number, "status": row.status, "recipient": row.recipient_id},
    )
    return row


def list_rejected(db: Session) -> list[EdoDocument]:
    """Staff's list: documents buyers rejected, until someone resends them."""
    return list(
        db.scalars(
            sa.select(EdoDocument)
            .where(EdoDocument.status == EdoStatus.REJECTED.value, EdoDocument.attention_resolved_at.is_(None))
            .order_by(EdoDocument.status_at.desc())
        )
    )
