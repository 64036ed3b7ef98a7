"""Invoices (счёт на оплату): what one says about an order, its number and validity, and issuing it once."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, object_session

from portal.audit import record_audit
from portal.billing.license import get_license
from portal.billing.models import Order, OrderTopup
from portal.billing.pricing import round_half_up_div
from portal.documents import numbering, render
from portal.documents.banking_days import add_banking_days
from portal.documents.files import store_file
from portal.documents.models import Invoice, InvoiceStatus, Requisites
from portal.documents.qr import payment_payload, qr_png
from portal.documents.seller import VAT_EXEMPT_BASIS, Seller, get_seller
from portal.documents.words import amount_in_words
from portal.money import format_amount
from portal.timeutil import msk_date, msk_midnight
from portal.wording import plural_ru

PRODUCT = "Лицензия на использование корпоративного мессенджера"
LICENSE_NAME = "Лицензионный договор (оферта)"


class DocumentsError(ValueError):
    """A documents operation cannot be done; the message (Russian) says why and is shown to the person."""


class RequisitesMissing(DocumentsError):
    def __init__(self) -> None:
        super().__init__("Чтобы выставить счёт, укажите реквизиты компании: они будут в счёте и в УПД.")


class TooManyOpenInvoices(DocumentsError):
    """The account already has as many unpaid invoices as MAX_OPEN_INVOICES allows.

    Every invoice takes a number from the year's gapless sequence and a stored PDF, and stays open for days; an
    account issuing them without paying would cost the vendor numbers, storage and the bookkeeper's attention."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"У компании уже {limit} {_invoices_ru(limit)}: оплатите или отмените один из них на главной странице."
        )


def _invoices_ru(n: int) -> str:
    return plural_ru(n, "неоплаченный счёт", "неоплаченных счёта", "неоплаченных счетов")


def count_open_invoices(db: Session, account_id: int) -> int:
    return (
        db.scalar(
            sa.select(sa.func.count())
            .select_from(Invoice)
            .where(
                Invoice.account_id == account_id,
                Invoice.status == InvoiceStatus.ISSUED.value,
                Invoice.paid_by.is_(None),  # a card order's record takes no place among invoices to pay
            )
        )
        or 0
    )


def check_open_invoices(db: Session, account_id: int, config: Mapping[str, Any]) -> None:
    """Raise TooManyOpenInvoices when one more invoice would exceed MAX_OPEN_INVOICES."""
    limit = int(config["MAX_OPEN_INVOICES"])
    if count_open_invoices(db, account_id) >= limit:
        raise TooManyOpenInvoices(limit)


def vat_of(total: int, rate: int | None) -> int:
    """The VAT included in `total` at `rate` percent, half up to the kopeck; 0 when exempt."""
    if not rate:
        return 0
    return round_half_up_div(total * rate, 100 + rate)


def vat_block(total: int, rate: int | None) -> dict[str, Any]:
    if rate is None:
        return {"exempt": True, "rate": None, "amount": 0, "basis_text": VAT_EXEMPT_BASIS}
    return {"exempt": False, "rate": rate, "amount": vat_of(total, rate), "basis_text": ""}


def vat_phrase(total: int, rate: int | None) -> str:
    """The VAT words of a payment purpose: «Без налога (НДС)» or «В том числе НДС 22 % — 1 526,39 руб.»."""
    if rate is None:
        return "Без налога (НДС)"
    return f"В том числе НДС {rate} % — {format_amount(vat_of(total, rate))} руб."


def order_line(order: Order) -> dict[str, Any]:
    """The invoice line for an order: months × monthly price less the discount, or one upgrade payment."""
    title = f"{PRODUCT}, тариф «{order.plan_title}»"
    plain = (
        order.kind != "upgrade"
        and order.monthly_price * order.months == order.subtotal
        and order.subtotal - order.discount == order.amount
    )
    if plain:
        return {
            "name": f"{title}, {order.months} мес.",
            "quantity": order.months,
            "unit": "мес",
            "unit_code": "362",  # ОКЕИ «месяц»: the licence is sold by the month
            "price": order.monthly_price,
            "discount": order.discount,
            "amount": order.amount,
        }
    # An upgrade is paid once for the rest of the current term; «условная единица» (ОКЕИ 876). When it also raises
    # prepaid later periods, the line names each of them: the payment covers them all.
    periods = [f"с {start:%d.%m.%Y} по {last:%d.%m.%Y}" for start, last in order_periods(order)]
    name = f"{title}, доплата за переход на больший тариф {periods[0]}"
    if len(periods) > 1:
        name += " и за оплаченный период " + " и ".join(periods[1:])
    return {
        "name": name,
        "quantity": 1,
        "unit": "усл. ед.",
        "unit_code": "876",
        "price": order.amount,
        "discount": 0,
        "amount": order.amount,
    }


def order_periods(order: Order) -> list[tuple[date, date]]:
    """(first day, last day) of each stretch an order's rights cover: the order's own, then the prepaid later
    periods an upgrade raises (billing's order_topups)."""
    own = [(order.starts_on, order.last_day)]
    db = object_session(order)
    if order.kind != "upgrade" or db is None:
        return own
    topups = db.scalars(sa.select(OrderTopup).where(OrderTopup.order_id == order.id).order_by(OrderTopup.starts_on))
    return own + [(t.starts_on, t.last_day) for t in topups]


def license_date(order: Order) -> date:
    """The date of the offer's edition the payer accepted (its acceptance date if the edition is unknown)."""
    published = get_license(order.license_version)
    return published.published_on if published is not None else msk_date(order.license_accepted_at)


def basis_text(order: Order) -> str:
    """«Лицензионный договор (оферта) ред. 2026-01 от 12.01.2026»: paying the invoice accepts that offer."""
    return f"{LICENSE_NAME} ред. {order.license_version} от {license_date(order):%d.%m.%Y}"


def buyer_block(requisites: Requisites) -> dict[str, Any]:
    return {
        "kind": requisites.kind,
        "name": requisites.name,
        "inn": requisites.inn,
        "kpp": requisites.kpp if requisites.kind == "org" else None,
        "address": requisites.address,
        "ogrn": requisites.ogrn,
        "edo_id": requisites.edo_id,
    }


def purpose_text(number: str, issued_on: date, order: Order, total: int, rate: int | None) -> str:
    """What the payer writes in «Назначение платежа»; it carries the invoice number the import matches by."""
    line = order_line(order)["name"].removeprefix(f"{PRODUCT}, ")
    return f"Оплата по счёту № {number} от {issued_on:%d.%m.%Y} за лицензию, {line} {vat_phrase(total, rate)}"


def qr_payload_for(seller: Seller, total: int, purpose: str) -> str:
    return payment_payload(
        name=seller.name,
        personal_acc=seller.account,
        bank_name=seller.bank_name,
        bic=seller.bik,
        corresp_acc=seller.corr_account,
        payee_inn=seller.inn,
        kpp=seller.kpp or None,
        sum_kopecks=total,
        purpose=purpose,
    )


def png_data_uri(payload: str, scale: int = 4) -> str:
    return "data:image/png;base64," + base64.b64encode(qr_png(payload, scale=scale)).decode("ascii")


def invoice_context(
    *,
    number: str,
    issued_on: date,
    valid_until: date,
    seller: Seller,
    buyer: Mapping[str, Any],
    order: Order,
    vat_rate: int | None,
    prepaid: int = 0,
) -> dict[str, Any]:
    """The plain dict `render_invoice_pdf` takes (see portal.documents.render).

    `prepaid`: what the account's balance already paid of the order; the invoice asks only for the rest."""
    line = order_line(order)
    total = order.amount - prepaid
    purpose = purpose_text(number, issued_on, order, total, vat_rate)
    payload = qr_payload_for(seller, total, purpose)
    return {
        "number": number,
        "date": issued_on,
        "due_date": valid_until,
        "valid_until": valid_until,
        "seller": seller.as_dict(),
        "buyer": {k: buyer[k] for k in ("kind", "name", "inn", "kpp", "address")},
        "basis": basis_text(order),
        "lines": [line],
        "subtotal": line["price"] * line["quantity"],
        "discount": line["discount"],
        "total": total,
        "order_total": order.amount,
        "prepaid": prepaid,
        "vat": vat_block(order.amount, vat_rate),
        "amount_in_words": amount_in_words(total),
        "purpose": purpose,
        "qr_payload": payload,
        # One pixel per module: the print stylesheet scales it without smoothing, and a PNG sixteen times smaller is
        # written (and embedded) in a fraction of the time.
        "qr_data_uri": png_data_uri(payload, scale=1),
    }


def invoice_file_name(number: str, issued_on: date) -> str:
    return f"Счёт на оплату № {number} от {issued_on:%d.%m.%Y}.pdf"


def get_invoice_for_order(db: Session, order_id: int) -> Invoice | None:
    return db.scalars(sa.select(Invoice).where(Invoice.order_id == order_id)).first()


def _new_invoice(db: Session, order: Order, seller: Seller, *, actor: Any | None, now: datetime) -> Invoice:
    """A new invoice for a pending order, not yet recorded: the year's next number, the buyer's requisites as they
    are now, the order's line and VAT; the caller fills in what its kind of invoice asks for."""
    if order.status != "pending":
        raise DocumentsError("Этот заказ уже не ждёт оплаты: выберите тариф заново.")
    requisites = db.scalars(sa.select(Requisites).where(Requisites.account_id == order.account_id)).first()
    if requisites is None:
        raise RequisitesMissing()
    taken = numbering.take_number(db, numbering.INVOICE, msk_date(now))
    return Invoice(
        account_id=order.account_id,
        order_id=order.id,
        number=taken.text,
        year=taken.day.year,
        serial=taken.serial,
        issued_on=taken.day,
        vat_rate=seller.vat_rate,
        vat_amount=vat_of(order.amount, seller.vat_rate),
        line_name=order_line(order)["name"],
        buyer=buyer_block(requisites),
        status=InvoiceStatus.ISSUED.value,
        created_at=now,
        created_by_user_id=actor.id if actor is not None else None,
    )


def issue_invoice(db: Session, order: Order, *, actor: Any | None, now: datetime, config: Mapping[str, Any]) -> Invoice:
    """Issue the invoice for a pending order: number, validity, PDF rendered once and stored. Does not commit.

    The number is taken in the caller's transaction, so if anything after it fails (rendering, the
    store, the commit) the rollback returns the number too and the year's numbering stays gapless.
    Asking twice for the same order gives the invoice already issued.
    """
    existing = get_invoice_for_order(db, order.id)
    if existing is not None:
        return existing
    # The order's row lock, held to the commit: a payment that changes the plan withdraws pending upgrades
    # (billing._cancel_stale_upgrades) and must not cancel this order between the check below and the commit,
    # which left an issued, payable invoice for a canceled order (found by tests/scale/test_two_of_everything.py).
    db.scalars(
        sa.select(Order).where(Order.id == order.id).with_for_update().execution_options(populate_existing=True)
    ).one()
    seller = get_seller(config)
    invoice = _new_invoice(db, order, seller, actor=actor, now=now)
    number, issued_on = invoice.number, invoice.issued_on
    # Counted under the counter's lock, so two checkouts at once cannot both take the last place; a refusal rolls
    # back with the number, which leaves no gap (the checkout asks check_open_invoices first and takes none).
    check_open_invoices(db, order.account_id, config)
    invoice.valid_until = valid_until = add_banking_days(issued_on, int(config["INVOICE_VALID_BANKING_DAYS"]))
    from portal.payments import ledger  # the ledger imports documents' models; pages here ask it for sums

    ctx = invoice_context(
        number=number,
        issued_on=issued_on,
        valid_until=valid_until,
        seller=seller,
        buyer=invoice.buyer,
        order=order,
        vat_rate=seller.vat_rate,
        prepaid=ledger.order_allocated(db, order.id),
    )
    invoice.amount = ctx["total"]
    invoice.purpose = ctx["purpose"]
    invoice.qr_payload = ctx["qr_payload"]
    db.add(invoice)
    db.flush()
    pdf = render.render_invoice_pdf(ctx)
    stored = store_file(
        db,
        config,
        account_id=order.account_id,
        kind="invoice_pdf",
        folder="invoices",
        stem=number,
        extension="pdf",
        data=pdf,
        content_type="application/pdf",
        download_name=invoice_file_name(number, issued_on),
        now=now,
    )
    invoice.pdf_file_id = stored.id
    # The order lives as long as the invoice may be paid: to the end of its last valid day, Moscow time.
    order.expires_at = msk_midnight(valid_until + timedelta(days=1))
    record_audit(
        db,
        actor=actor,
        account=order.account_id,
        action="documents.invoice_issued",
        before=None,
        after={
            "invoice": number,
            "order_id": order.id,
            "amount": invoice.amount,
            "valid_until": valid_until.isoformat(),
            "pdf_sha256": stored.sha256,
        },
    )
    return invoice


def record_card_order(
    db: Session, order: Order, *, actor: Any | None, now: datetime, config: Mapping[str, Any]
) -> Invoice:
    """A company pays a pending order by card and wants a УПД: the order's invoice record, marked paid by card.

    The card payment then goes the one way money goes (ledger.pay_order → invoice_paid → number_upd), so the УПД is
    formed, dated and found (by a later refund's УКД) exactly as for a transfer. The record takes a number from the
    year's invoice sequence, has no PDF and no QR, and is never offered for a transfer. Does not commit; asking twice
    for the same order gives the same record."""
    existing = get_invoice_for_order(db, order.id)
    if existing is not None:
        return existing
    invoice = _new_invoice(db, order, get_seller(config), actor=actor, now=now)
    invoice.valid_until = invoice.issued_on
    invoice.amount = order.amount
    invoice.purpose = f"Оплата картой по заказу № {order.id}: {invoice.line_name.removeprefix(f'{PRODUCT}, ')}"[:500]
    invoice.qr_payload = ""
    invoice.paid_by = "card"
    db.add(invoice)
    db.flush()
    record_audit(
        db,
        actor=actor,
        account=order.account_id,
        action="documents.card_order_recorded",
        before=None,
        after={
            "invoice": invoice.number,
            "order_id": order.id,
            "amount": invoice.amount,
            "buyer_inn": invoice.buyer["inn"],
        },
    )
    return invoice
