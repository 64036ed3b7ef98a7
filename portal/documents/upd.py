"""УПД after a paid invoice: numbered in the payment's transaction, rendered (PDF + XML) right after it or by a retry."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.billing.models import Order
from portal.billing.pricing import round_half_up_div
from portal.documents import numbering, render, upd_xml
from portal.documents.files import record_file, stored_path
from portal.documents.invoices import LICENSE_NAME, license_date, order_periods, vat_block, vat_of
from portal.documents.models import FormedDocument, Invoice, StoredFile, Upd, UpdStatus
from portal.documents.seller import Seller, get_seller
from portal.documents.store import get_store
from portal.documents.validators import split_ip_name

log = logging.getLogger(__name__)

NumberedRow = TypeVar("NumberedRow", bound=FormedDocument)
FormFn = Callable[..., None]  # form(db, row, *, now, config): render and store a numbered document


# --- the frozen context: JSON with dates kept as dates ---------------------------------------------


def freeze(value: Any) -> Any:
    """A context as JSON: dates and datetimes tagged, so that `thaw` gives back exactly what was rendered."""
    if value is None or isinstance(value, str | int | float):
        return value  # most of a context: answered before the ABC checks below, which cost more
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, Mapping):
        return {str(k): freeze(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [freeze(v) for v in value]
    return value


def thaw(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$datetime"}:
            return datetime.fromisoformat(value["$datetime"])
        if set(value) == {"$date"}:
            return date.fromisoformat(value["$date"])
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    return value


# --- what the УПД says ------------------------------------------------------------------------------


def split_fio(short: str) -> tuple[str, str, str | None]:
    """«Иванов И. И.» → ("Иванов", "И.", "И."): the signer's name as the XML wants it, from the config's form."""
    words = short.split()
    last, rest = words[0], "".join(words[1:])
    parts = [p + "." for p in rest.split(".") if p] if "." in rest else words[1:]
    first = parts[0] if parts else "-"
    middle = parts[1] if len(parts) > 1 else None
    return last, first, middle


def signer_position(seller: Seller) -> str:
    return "Индивидуальный предприниматель" if len(seller.inn) == 12 else "Генеральный директор"


def parties(seller: Seller, buyer: Mapping[str, Any]) -> dict[str, Any]:
    """Who a seller's document names and who signs it: the same for the УПД, the УКД and the advance invoice."""
    director = {"position": signer_position(seller), "name": seller.director}
    if len(seller.inn) == 12:
        # A sole proprietor signs for themself («Индивидуальный предприниматель»): the ФИО is theirs, written out
        # in full from the name (the start-up check makes sure it splits), not SELLER_DIRECTOR's initials.
        last, first, middle = split_ip_name(seller.name)
    else:
        last, first, middle = split_fio(seller.director)
    return {
        "seller": {k: getattr(seller, k) for k in ("name", "inn", "kpp", "ogrn", "address", "director", "accountant")},
        "buyer": {k: buyer.get(k) for k in ("kind", "name", "inn", "kpp", "address")},
        "responsible": director,
        "composer": seller.composer,
        "signer": {"last_name": last, "first_name": first, "middle_name": middle, "position": director["position"]},
        # The buyer's ЭДО id names the XML file; without one (documents downloaded, not sent by ЭДО) its ИНН does.
        "edo": {
            "sender_id": seller.edo_id,
            "recipient_id": buyer.get("edo_id") or buyer["inn"],
            "guid": str(uuid.uuid4()),
        },
    }


def upd_line(invoice: Invoice, order: Order) -> dict[str, Any]:
    """The table row: months as on the invoice, the price per month after the discount and without VAT.

    The whole order's value: the rights are transferred in full, whether the invoice asked for all of it or only
    for what the account's balance did not already cover."""
    total = order.amount
    vat = vat_of(total, invoice.vat_rate) if invoice.vat_rate is not None else 0
    without_vat = total - vat
    monthly = order.kind != "upgrade" and order.months > 0
    quantity = order.months if monthly else 1
    return {
        "name": invoice.line_name,
        "unit_code": "362" if monthly else "876",
        "unit": "мес" if monthly else "усл. ед.",
        "quantity": quantity,
        "price": round_half_up_div(without_vat, quantity),
        "amount_without_vat": without_vat,
        "vat_amount": vat,
        "amount": total,
    }


def upd_context(
    *,
    number: str,
    doc_date: date,
    invoice: Invoice,
    order: Order,
    seller: Seller,
    payment_doc: Mapping[str, Any],
    now: datetime,
    advance_invoices: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The dict `render_upd_pdf` and `build_upd_xml` take (see portal.documents.render)."""
    line = upd_line(invoice, order)
    who = parties(seller, invoice.buyer)
    return {
        "number": number,
        "date": doc_date,
        "correction": None,
        **who,
        "payment_docs": [dict(payment_doc)],
        "advance_invoices": list(advance_invoices or []),
        "gov_contract_id": None,
        "lines": [line],
        "total_without_vat": line["amount_without_vat"],
        "total": line["amount"],
        "vat": vat_block(order.amount, invoice.vat_rate),
        "basis": {
            "name": LICENSE_NAME,
            "number": f"ред. {order.license_version}",
            "date": license_date(order),
        },
        "transport": None,
        "transferred_by": who["responsible"],
        "shipment_date": doc_date,
        "other_info": "Права предоставлены на период "
        + " и ".join(f"с {start:%d.%m.%Y} по {last:%d.%m.%Y}" for start, last in order_periods(order)),
        "created_at": now,
    }


def upd_file_name(number: str, doc_date: date) -> str:
    return f"УПД № {number} от {doc_date:%d.%m.%Y}.pdf"


_REFERENCE = re.compile(r"№\s*(\S+)")


def payment_doc_from_reference(reference: str, paid_on: date, amount: int) -> dict[str, Any]:
    """Line (5) from a bank reference such as «п/п № 512 от 25.11.2026»; the whole text if it has no number."""
    match = _REFERENCE.search(reference)
    number = match.group(1) if match else " ".join(reference.split())[:40]
    return {"number": number, "date": paid_on, "amount": amount}


def number_upd(
    db: Session,
    invoice: Invoice,
    order: Order,
    *,
    doc_date: date,
    payment_doc: Mapping[str, Any],
    now: datetime,
    config: Mapping[str, Any],
    advance_invoices: list[dict[str, Any]] | None = None,
) -> Upd:
    """Create the УПД row (number from its own gapless counter) inside the payment's transaction; no files yet."""
    existing = db.scalars(sa.select(Upd).where(Upd.invoice_id == invoice.id)).first()
    if existing is not None:
        return existing
    taken = numbering.take_number(db, numbering.UPD, doc_date)
    ctx = upd_context(
        number=taken.text,
        doc_date=doc_date,
        invoice=invoice,
        order=order,
        seller=get_seller(config),
        payment_doc=payment_doc,
        now=now,
        advance_invoices=advance_invoices,
    )
    upd = Upd(
        account_id=invoice.account_id,
        invoice_id=invoice.id,
        amount=order.amount,
        vat_rate=invoice.vat_rate,
        vat_amount=ctx["vat"]["amount"],
    )
    return record_numbered(db, upd, taken, ctx, now=now)


def record_numbered(
    db: Session, row: NumberedRow, taken: numbering.Taken, ctx: Mapping[str, Any], *, now: datetime
) -> NumberedRow:
    """Give a new УПД, УКД or advance invoice its number and frozen context and record it, pending until
    `form_numbered` renders its files; flushed, so that its id is known."""
    row.number, row.year, row.serial, row.doc_date = taken.text, taken.day.year, taken.serial, taken.day
    row.context = freeze(ctx)
    row.status = UpdStatus.PENDING.value
    row.created_at = now
    db.add(row)
    db.flush()
    return row


def store_document(
    db: Session,
    *,
    account_id: int,
    folder: str,
    number: str,
    files: list[tuple[str, str, str, bytes]],
    now: datetime,
    config: Mapping[str, Any],
) -> list[StoredFile]:
    """Write a document's files (kind, content type, download name, bytes) to the store and record them.

    Each file's path carries its hash, so a retry that renders the same bytes finds the same name and the store's
    write-once promise holds; a different render never overwrites an earlier one."""
    store = get_store(config)
    written = []
    for kind, content_type, name, data in files:
        suffix = name.rsplit(".", 1)[-1]
        written.append(
            (kind, content_type, name, store.write(stored_path(account_id, folder, number, data, suffix), data))
        )
    return [
        record_file(db, w, account_id=account_id, kind=kind, content_type=ct, download_name=name, now=now)
        for kind, ct, name, w in written
    ]


def form_numbered(
    db: Session,
    row: Any,
    *,
    kind: str,
    title: str,
    render_pdf: Callable[[Mapping[str, Any]], bytes],
    build_xml: Callable[[Mapping[str, Any]], tuple[str, bytes]],
    now: datetime,
    config: Mapping[str, Any],
) -> None:
    """Render a numbered document's PDF and XML from its frozen context and store both; does not commit.

    Everything that can fail for the document's own reasons (rendering, the store) happens before the database is
    touched, so a failure leaves the session as it was and the document still pending. The store's path uses the
    ASCII «YYYY-NNNNNN» of the number (the folder says the kind); the download name is the number as printed."""
    if row.status == UpdStatus.FORMED:
        return
    ctx = thaw(row.context)
    pdf = render_pdf(ctx)
    xml_name, xml = build_xml(ctx)
    pdf_row, xml_row = store_document(
        db,
        account_id=row.account_id,
        folder=kind,
        number=numbering.format_number(row.year, row.serial),
        files=[
            (f"{kind}_pdf", "application/pdf", f"{title} № {row.number} от {row.doc_date:%d.%m.%Y}.pdf", pdf),
            (f"{kind}_xml", "application/xml", xml_name, xml),
        ],
        now=now,
        config=config,
    )
    row.pdf_file_id, row.xml_file_id = pdf_row.id, xml_row.id
    row.status = UpdStatus.FORMED.value
    row.formed_at = now
    row.last_error = None


def form_upd(db: Session, upd: Upd, *, now: datetime, config: Mapping[str, Any]) -> None:
    form_numbered(
        db,
        upd,
        kind="upd",
        title="УПД",
        render_pdf=render.render_upd_pdf,
        build_xml=upd_xml.build_upd_xml,
        now=now,
        config=config,
    )


def try_form(db: Session, row: Any, form: FormFn, *, now: datetime, config: Mapping[str, Any]) -> bool:
    """Form a numbered document (УПД, УКД, advance invoice), or note why not and leave it pending for the retry;
    never raises for a document failure.

    Call it only with the payment already committed: on failure the session is rolled back (dropping any
    half-recorded file rows) before the error is noted. The caller commits either way.
    """
    model, row_id, number = type(row), row.id, row.number
    try:
        form(db, row, now=now, config=config)
    except Exception as exc:  # the payment is committed already; the document comes on the next try
        log.exception("%s %s not formed, will retry", model.__name__, number)
        error = f"{type(exc).__name__}: {exc}"[:2000]
    else:
        row.attempts += 1
        return True
    db.rollback()
    fresh = db.get(model, row_id)
    assert fresh is not None
    fresh.attempts += 1
    fresh.last_error = error
    return False


def try_form_upd(db: Session, upd: Upd, *, now: datetime, config: Mapping[str, Any]) -> bool:
    return try_form(db, upd, form_upd, now=now, config=config)


def form_pending(
    db: Session, model: Any, form: FormFn, title: str, *, now: datetime, config: Mapping[str, Any], limit: int = 50
) -> list[str]:
    """Form the documents of `model` still pending (a failed render, a crash after payment); safe on several
    servers at once.

    Each is taken with SKIP LOCKED on PostgreSQL, so two servers never render the same one, and is committed on
    its own, so one that fails again does not hold back the others.
    """
    postgres = db.get_bind().dialect.name == "postgresql"
    pending = model.status == UpdStatus.PENDING.value
    ids = db.scalars(sa.select(model.id).where(pending).order_by(model.id).limit(limit)).all()
    done: list[str] = []
    for row_id in ids:
        query = sa.select(model).where(model.id == row_id, pending)
        if postgres:
            query = query.with_for_update(skip_locked=True)
        row = db.scalars(query.execution_options(populate_existing=True)).first()
        if row is None:
            continue  # another server has it, or formed it meanwhile
        number = row.number
        if try_form(db, row, form, now=now, config=config):
            done.append(f"{title} № {number} сформирован")
        else:
            done.append(f"{title} № {number} не сформирован: {db.get(model, row_id).last_error}")
        db.commit()
    return done


def form_pending_upds(db: Session, *, now: datetime, config: Mapping[str, Any], limit: int = 50) -> list[str]:
    return form_pending(db, Upd, form_upd, "УПД", now=now, config=config, limit=limit)
