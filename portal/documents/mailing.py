"""Closing documents by e-mail, as the accountant chose in the requisites: each УПД as it is formed, or one letter a
month with the month's documents and a ZIP.

`document_mails` is the outbox: one row per letter under a unique key (`upd:<id>`, `month:<account>:<YYYY-MM>`), so
a letter is queued once however often the sweep runs, on however many servers. `send_one` sends a row still pending
and marks it sent in the same transaction; a failure is noted with the next attempt's time. A crash between the SMTP
server's «250» and the commit would send that letter again: e-mail is at-least-once, never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.documents.archive import build_archive, parse_period
from portal.documents.models import AdvanceInvoice, DocumentMail, Requisites, StoredFile, Ukd, Upd, UpdStatus
from portal.documents.render import rub
from portal.documents.seller import get_seller
from portal.documents.service import read_file
from portal.documents.store import StoreError
from portal.support.email import Attachment, EmailError, backend_from_config, build_message
from portal.timeutil import format_month_ru, msk_date

log = logging.getLogger(__name__)

RETRY_DELAYS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600)
# Documents sent one by one in the «each» mode: the key's prefix → (model, what the letter calls it).
EACH: dict[str, tuple[Any, str]] = {
    "upd": (Upd, "универсальный передаточный документ"),
    "ukd": (Ukd, "универсальный корректировочный документ (УКД)"),
    "advance": (AdvanceInvoice, "счёт-фактура на аванс"),
}


def _add(db: Session, *, key: str, account_id: int, to_email: str, now: datetime) -> bool:
    if db.scalar(sa.select(DocumentMail.id).where(DocumentMail.key == key)) is not None:
        return False
    try:
        with db.begin_nested():
            db.add(DocumentMail(key=key, account_id=account_id, to_email=to_email, status="pending", created_at=now))
    except sa.exc.IntegrityError:
        return False  # another server queued it a moment ago
    return True


def enqueue(db: Session, *, now: datetime) -> int:
    """Queue the letters that are due: every УПД formed since «each» was chosen; last month's letter for «monthly»."""
    count = 0
    for req in db.scalars(sa.select(Requisites).where(Requisites.mail_mode == "each")):
        queued = sa.select(DocumentMail.key).where(DocumentMail.account_id == req.account_id)
        for kind, (model, _title) in EACH.items():
            docs = db.scalars(
                sa.select(model).where(
                    model.account_id == req.account_id,
                    model.status == UpdStatus.FORMED.value,
                    model.formed_at >= req.updated_at,
                    (sa.literal(f"{kind}:") + sa.cast(model.id, sa.String)).not_in(queued),
                )
            )
            for doc in docs:
                count += _add(db, key=f"{kind}:{doc.id}", account_id=req.account_id, to_email=req.email, now=now)
    today = msk_date(now)
    first = today.replace(day=1)
    last_month = (first - timedelta(days=1)).replace(day=1)
    for req in db.scalars(sa.select(Requisites).where(Requisites.mail_mode == "monthly")):
        has_documents = db.scalar(
            sa.select(sa.func.count())
            .select_from(Upd)
            .where(Upd.account_id == req.account_id, Upd.doc_date >= last_month, Upd.doc_date < first)
        )
        if has_documents:
            key = f"month:{req.account_id}:{last_month:%Y-%m}"
            count += _add(db, key=key, account_id=req.account_id, to_email=req.email, now=now)
    return count


def _file(db: Session, file_id: int | None, config: Mapping[str, Any]) -> Attachment | None:
    stored = db.get(StoredFile, file_id) if file_id else None
    if stored is None:
        return None
    return Attachment(stored.download_name, stored.content_type, read_file(stored, config))


def _letter(db: Session, row: DocumentMail, config: Mapping[str, Any]) -> tuple[str, str, list[Attachment]] | None:
    seller = get_seller(config)
    signature = f"\n\nС уважением,\n{seller.name}\nПисьмо отправлено автоматически; отвечать на него не нужно.\n"
    kind, _, rest = row.key.partition(":")
    if kind in EACH:
        model, title = EACH[kind]
        doc = db.get(model, int(rest))
        if doc is None or doc.status != UpdStatus.FORMED:
            return None
        files = [a for a in (_file(db, doc.pdf_file_id, config), _file(db, doc.xml_file_id, config)) if a]
        short = {"upd": "УПД", "ukd": "УКД", "advance": "Счёт-фактура на аванс"}[kind]
        amount = doc.decrease if kind == "ukd" else doc.amount
        what = "уменьшает стоимость на" if kind == "ukd" else "на сумму"
        subject = f"{short} № {doc.number} от {doc.doc_date:%d.%m.%Y} — {seller.name}"
        body = (
            "Здравствуйте!\n\n"
            f"Сформирован {title} № {doc.number} от {doc.doc_date:%d.%m.%Y}, {what} {_rub(amount)} руб. "
            "Он во вложении: PDF для печати и XML для загрузки в учётную систему."
            f"{signature}"
        )
        return subject, body, files
    if kind == "month":
        account_id, _, month = rest.partition(":")
        period = parse_period(month)
        assert period is not None
        upds = list(
            db.scalars(
                sa.select(Upd)
                .where(Upd.account_id == int(account_id), Upd.doc_date >= period.start, Upd.doc_date < period.end)
                .order_by(Upd.doc_date, Upd.id)
            )
        )
        files: list[Attachment] = []
        lines = []
        for upd in upds:
            lines.append(f"  УПД № {upd.number} от {upd.doc_date:%d.%m.%Y} на сумму {_rub(upd.amount)} руб.")
            files += [a for a in (_file(db, upd.pdf_file_id, config), _file(db, upd.xml_file_id, config)) if a]
        archive, count = build_archive(db, int(account_id), period, config)
        month_title = format_month_ru(period.start)
        if count:
            files.append(Attachment(f"Документы за {month_title}.zip", "application/zip", archive))
        subject = f"Закрывающие документы за {month_title} — {seller.name}"
        body = (
            "Здравствуйте!\n\n"
            f"Закрывающие документы за {month_title}:\n" + "\n".join(lines) + "\n\n"
            "Во вложении каждый документ (PDF и XML) и ZIP-архив со всеми документами месяца, включая счета."
            f"{signature}"
        )
        return subject, body, files
    return None


def _rub(kopecks: int) -> str:
    return rub(kopecks)


def send_one(
    db: Session, row_id: int, *, now: datetime, config: Mapping[str, Any], backend: Any = None, instance_path: str = "."
) -> DocumentMail | None:
    """Send one queued letter if it is still pending. No commit."""
    query = sa.select(DocumentMail).where(DocumentMail.id == row_id)
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    row = db.scalars(query.execution_options(populate_existing=True)).first()
    if row is None or row.status != "pending":
        return row
    backend = backend or backend_from_config(config, instance_path)
    try:
        letter = _letter(db, row, config)
        if letter is None:
            raise EmailError("документ ещё не сформирован")
        subject, body, files = letter
        sender = str(config.get("EMAIL_FROM") or "documents@localhost")
        backend.send(
            build_message(sender=sender, to=row.to_email, subject=subject, body=body, attachments=files, now=now)
        )
    except (EmailError, StoreError) as exc:
        row.attempts += 1
        row.last_error = str(exc)[:2000]
        row.next_attempt_at = now + timedelta(seconds=RETRY_DELAYS[min(row.attempts, len(RETRY_DELAYS)) - 1])
        log.warning("document letter %s not sent (attempt %s): %s", row.key, row.attempts, exc)
        return row
    row.status = "sent"
    row.sent_at = now
    row.last_error = None
    return row


def send_pending(
    db: Session,
    *,
    now: datetime,
    config: Mapping[str, Any],
    backend: Any = None,
    instance_path: str = ".",
    limit: int = 50,
) -> list[str]:
    due = db.scalars(
        sa.select(DocumentMail.id)
        .where(
            DocumentMail.status == "pending",
            sa.or_(DocumentMail.next_attempt_at.is_(None), DocumentMail.next_attempt_at <= now),
        )
        .order_by(DocumentMail.id)
        .limit(limit)
    ).all()
    done = []
    for row_id in due:
        row = send_one(db, row_id, now=now, config=config, backend=backend, instance_path=instance_path)
        if row is not None:
            done.append(
                f"Письмо {row.key} → {row.to_email}: "
                + ("отправлено" if row.status == "sent" else f"ошибка ({row.last_error})")
            )
        db.commit()
    return done


def sweep(
    db: Session, *, now: datetime, config: Mapping[str, Any], backend: Any = None, instance_path: str = "."
) -> list[str]:
    """Queue what is due and send what is pending. Commits."""
    queued = enqueue(db, now=now)
    db.commit()
    lines = [f"Писем в очереди: {queued}"] if queued else []
    return lines + send_pending(db, now=now, config=config, backend=backend, instance_path=instance_path)
