"""Staff actions on an account: a trial month, a custom plan, an invoice paid or canceled, a payment linked or dismissed.

Every action takes a reason and writes one `support.*` audit record (who, when, before → after, why) in the same
transaction as the change; the services it calls (billing, documents) add their own technical records. Documents'
services commit themselves, so the support record is added before calling them: it is committed with the change,
or rolled back with it when the change is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, User
from portal.audit import record_audit
from portal.billing.catalog import make_custom_plan
from portal.billing.custom_plans import create_custom_plan, custom_plan_dict
from portal.billing.display import format_storage, users_ru
from portal.billing.models import CustomPlan, Order
from portal.billing.settlement import order_problem
from portal.billing.subscriptions import PeriodInfo, SubscriptionState, TrialError, get_subscription_state
from portal.billing.trial import start_trial
from portal.documents import service as documents
from portal.documents.invoices import DocumentsError
from portal.documents.models import Invoice, InvoiceStatus, Requisites
from portal.money import format_amount, format_rub
from portal.payments import ledger, statement_lines
from portal.payments.models import LineStatus, StatementLine
from portal.payments.statement import find_invoice_numbers
from portal.support.errors import AmountMismatchError, InvoiceNotPayable, SupportError, clean_reason
from portal.support.requests import close_with
from portal.textinput import quoted
from portal.timeutil import format_date, msk_date


def _state_summary(state: SubscriptionState) -> dict[str, Any]:
    return {
        "plan": state.plan.code,
        "status": state.status,
        "paid_until": state.paid_until.isoformat() if state.paid_until else None,
        "trial_until": state.trial_until.isoformat() if state.trial_until else None,
        "trial_used": state.trial_used,
    }


def switch_on_trial(
    db: Session,
    *,
    actor: User,
    account_id: int,
    plan_code: str,
    reason: str | None,
    now: datetime,
    request_id: int | None = None,
) -> PeriodInfo:
    """One free month of any plan, once per account (billing refuses the second time). The caller commits."""
    reason = clean_reason(reason)
    before = get_subscription_state(db, account_id, now)
    try:
        period = start_trial(db, actor=actor, account_id=account_id, plan_code=plan_code, now=now)
    except TrialError as exc:
        raise SupportError(str(exc)) from None
    after = get_subscription_state(db, account_id, now)
    _record_and_close(
        db,
        actor=actor,
        account_id=account_id,
        action="support.trial_switched_on",
        change=(_state_summary(before), _state_summary(after)),
        reason=reason,
        request_id=request_id,
        note=f"Пробный период тарифа «{period.plan.title}» включён по {format_date(period.last_day)} включительно.",
        now=now,
    )
    return period


def _record_and_close(
    db: Session,
    *,
    actor: User,
    account_id: int,
    action: str,
    change: tuple[dict[str, Any] | None, dict[str, Any]],
    reason: str,
    request_id: int | None,
    note: str,
    now: datetime,
) -> None:
    """The action's audit record (naming the request it answers), and the request closed as done with `note`."""
    before, after = change[0], change[1] | {"request_id": request_id}
    record_audit(db, actor=actor, account=account_id, action=action, before=before, after=after, reason=reason)
    close_with(db, request_id, account_id, actor=actor, note=note, now=now)


def set_custom_plan(
    db: Session,
    *,
    actor: User,
    account_id: int,
    seats: int,
    storage_bytes: int,
    monthly_price: int,
    reason: str | None,
    now: datetime,
    request_id: int | None = None,
) -> CustomPlan:
    """A plan over 1000 users for one account; the owner then buys it like any plan. The caller commits."""
    reason = clean_reason(reason)
    try:
        plan = make_custom_plan(account_id, seats, storage_bytes, monthly_price)
    except ValueError as exc:
        raise SupportError(str(exc)) from None
    existing = db.scalars(sa.select(CustomPlan).where(CustomPlan.code == plan.code)).first()
    before = custom_plan_dict(existing) if existing is not None else None
    row = create_custom_plan(
        db,
        actor=actor,
        account_id=account_id,
        seats=seats,
        storage_bytes=storage_bytes,
        monthly_price=monthly_price,
        now=now,
    )
    _record_and_close(
        db,
        actor=actor,
        account_id=account_id,
        action="support.custom_plan_set",
        change=(before, custom_plan_dict(row)),
        reason=reason,
        request_id=request_id,
        note=(
            f"Для вас создан индивидуальный тариф: до {users_ru(seats)}, {format_storage(storage_bytes)}, "
            f"{format_rub(monthly_price)} в месяц. Он на странице «Тарифы» — его можно оплатить картой или по счёту."
        ),
        now=now,
    )
    return row


# --- invoices ---------------------------------------------------------------------------------------------


@contextmanager
def _refused_by_documents(db: Session) -> Iterator[None]:
    """Documents refused the change (and may have written part of it): roll back, and say why to the person."""
    try:
        yield
    except DocumentsError as exc:
        db.rollback()
        raise SupportError(str(exc)) from None


def _invoice_summary(invoice: Invoice) -> dict[str, Any]:
    return {"invoice": invoice.number, "status": invoice.status, "amount": invoice.amount}


def _invoice(db: Session, invoice_id: int) -> Invoice:
    invoice = db.get(Invoice, invoice_id)
    if invoice is None:
        raise SupportError("Счёт не найден.")
    return invoice


def _open_invoice(db: Session, invoice_id: int, *, paid: str, canceled: str) -> Invoice:
    """The invoice while it is open; a paid or canceled one is refused with `paid` or `canceled` (which may name
    {number} and {reference})."""
    invoice = _invoice(db, invoice_id)
    refusal = {InvoiceStatus.PAID: paid, InvoiceStatus.CANCELED: canceled}.get(invoice.status)
    if refusal is not None:
        raise InvoiceNotPayable(refusal.format(number=invoice.number, reference=invoice.payment_reference))
    return invoice


def _audit_invoice(
    db: Session, invoice: Invoice, *, actor: User, action: str, after: dict[str, Any], reason: str
) -> None:
    before = _invoice_summary(invoice)
    record_audit(db, actor=actor, account=invoice.account_id, action=action, before=before, after=after, reason=reason)


def mark_invoice_paid(
    db: Session,
    invoice_id: int,
    *,
    actor: User,
    bank_reference: str | None,
    paid_on: date | None,
    reason: str | None,
    now: datetime,
    config: Mapping[str, Any] | None = None,
) -> Invoice:
    """Mark an invoice paid by hand: documents pays it exactly as an imported payment does (plan + УПД). Commits."""
    reason = clean_reason(reason)
    reference = " ".join((bank_reference or "").split())
    if not reference:
        raise SupportError("Укажите платёжный документ, например «п/п № 512 от 25.11.2026».")
    if paid_on is None:
        raise SupportError("Укажите дату поступления денег.")
    if paid_on > msk_date(now):
        raise SupportError("Дата поступления не может быть в будущем.")
    invoice = _open_invoice(
        db,
        invoice_id,
        paid="Счёт № {number} уже оплачен ({reference}): повторно отметить оплату нельзя.",
        canceled="Счёт № {number} отменён: отметить его оплаченным нельзя.",
    )
    after = {
        "invoice": invoice.number,
        "status": InvoiceStatus.PAID.value,
        "amount": invoice.amount,
        "reference": reference,
        "paid_on": paid_on.isoformat(),
    }
    _audit_invoice(db, invoice, actor=actor, action="support.invoice_marked_paid", after=after, reason=reason)
    try:
        return statement_lines.mark_invoice_paid(
            db, invoice_id, actor=actor, bank_reference=reference, paid_on=paid_on, now=now, config=config
        )
    except DocumentsError as exc:
        db.rollback()
        # Paid, canceled or no longer applicable meanwhile (the invoice, or the order it bills — e.g. the period an
        # upgrade raises has begun): a conflict with the account's state, not a mistake in the form.
        invoice = _invoice(db, invoice_id)
        order = db.get(Order, invoice.order_id)
        settled = invoice.status in (InvoiceStatus.PAID, InvoiceStatus.CANCELED) or (
            order is not None and order_problem(db, order, now) is not None
        )
        db.rollback()  # order_problem locks the account's subscription: nothing is kept
        raise (InvoiceNotPayable if settled else SupportError)(str(exc)) from None


def cancel_invoice(db: Session, invoice_id: int, *, actor: User, reason: str | None, now: datetime) -> Invoice:
    """Cancel an unpaid invoice (and its order); its number is never reused. Commits."""
    reason = clean_reason(reason)
    invoice = _open_invoice(
        db,
        invoice_id,
        paid="Счёт № {number} уже оплачен: отменить его нельзя.",
        canceled="Счёт № {number} уже отменён.",
    )
    after = {"invoice": invoice.number, "status": InvoiceStatus.CANCELED.value}
    _audit_invoice(db, invoice, actor=actor, action="support.invoice_canceled", after=after, reason=reason)
    with _refused_by_documents(db):
        return documents.cancel_invoice(db, invoice_id, actor=actor, reason=reason, now=now)


# --- bank statements --------------------------------------------------------------------------------------


def get_line(db: Session, line_id: int) -> StatementLine | None:
    return db.get(StatementLine, line_id)


@dataclass(frozen=True)
class Candidate:
    """An open invoice a payment might be for, with what speaks for it."""

    invoice: Invoice
    account: Account
    number_in_purpose: bool
    same_inn: bool
    same_amount: bool


def candidate_invoices(db: Session, line: StatementLine, limit: int = 20) -> list[Candidate]:
    """Open invoices named in the purpose, of the payer's ИНН, or of the same amount: the likeliest first."""
    numbers = find_invoice_numbers(line.purpose or "")
    conditions = [Invoice.amount == line.amount]
    if numbers:
        conditions.append(Invoice.number.in_(numbers))
    inn = (line.payer_inn or "").strip()
    if inn:
        accounts_with_inn = sa.select(Requisites.account_id).where(Requisites.inn == inn)
        conditions.append(Invoice.account_id.in_(accounts_with_inn))
    rows = db.execute(
        sa.select(Invoice, Account)
        .join(Account, Account.id == Invoice.account_id)
        .where(Invoice.status == InvoiceStatus.ISSUED.value, Invoice.paid_by.is_(None), sa.or_(*conditions))
        .order_by(Invoice.issued_on.desc(), Invoice.id.desc())
        .limit(200)
    ).all()
    found = [
        Candidate(
            invoice=inv,
            account=acc,
            number_in_purpose=inv.number in numbers,
            same_inn=bool(inn) and inv.buyer.get("inn", "") == inn,
            same_amount=inv.amount == line.amount,
        )
        for inv, acc in rows
    ]
    found.sort(key=lambda c: (not c.number_in_purpose, not c.same_inn, not c.same_amount))
    return found[:limit]


def find_open_invoice_by_number(db: Session, number: str) -> Invoice | None:
    number = " ".join((number or "").split()).lstrip("№ ").strip()
    if not number:
        return None
    return db.scalars(sa.select(Invoice).where(Invoice.number == number)).first()


def link_payment(
    db: Session,
    line_id: int,
    invoice_id: int,
    *,
    actor: User,
    confirm_amount_mismatch: bool,
    reason: str | None,
    now: datetime,
    config: Mapping[str, Any] | None = None,
) -> StatementLine:
    """Link an unmatched payment to an invoice: it is paid as by the import. A different amount needs a yes. Commits."""
    reason = clean_reason(reason)
    line = get_line(db, line_id)
    if line is None:
        raise SupportError("Платёж не найден.")
    if line.status != LineStatus.UNMATCHED:
        raise SupportError(f"Платёж {line.reference} уже разобран: {line.status_title.lower()}.")
    invoice = _invoice(db, invoice_id)
    if invoice.status != InvoiceStatus.ISSUED:
        raise SupportError(f"Счёт № {invoice.number} {invoice.status_title.lower()}: привязать к нему платёж нельзя.")
    remaining = ledger.invoice_remaining(db, invoice)
    mismatch = line.amount - remaining
    if mismatch and not confirm_amount_mismatch:
        more_or_less = "больше" if mismatch > 0 else "меньше"
        then = "остаток ляжет на баланс компании" if mismatch > 0 else "недоплата останется к оплате по счёту"
        raise AmountMismatchError(
            f"Сумма платежа {format_rub(line.amount)} {more_or_less} суммы к оплате по счёту № {invoice.number} "
            f"({format_rub(remaining)}) на {format_rub(abs(mismatch))}: {then}. Чтобы привязать, "
            "отметьте «Сумма отличается — всё равно привязать»."
        )
    record_audit(
        db,
        actor=actor,
        account=invoice.account_id,
        action="support.payment_linked",
        before={"payment": line.reference, "line_id": line.id, "status": line.status, "invoice_status": invoice.status},
        after={
            "payment": line.reference,
            "line_id": line.id,
            "status": LineStatus.LINKED.value,
            "invoice": invoice.number,
            "payment_amount": line.amount,
            "invoice_amount": invoice.amount,
            "amount_mismatch_confirmed": bool(mismatch),
        },
        reason=reason,
    )
    with _refused_by_documents(db):
        return statement_lines.link_statement_line(
            db,
            line_id,
            invoice_id,
            actor=actor,
            confirm_amount_mismatch=bool(confirm_amount_mismatch),
            now=now,
            config=config,
        )


def invoice_to_link(db: Session, invoice_id: int | None, number: str | None) -> Invoice | None:
    """The invoice a payment is to be linked to: the one chosen from the candidates, else the number typed."""
    invoice = db.get(Invoice, invoice_id) if invoice_id is not None else None
    return invoice if invoice is not None else find_open_invoice_by_number(db, number or "")


def link_payment_and_say(
    db: Session,
    line: StatementLine,
    invoice: Invoice,
    *,
    actor: User,
    confirmed: bool,
    reason: str | None,
    now: datetime,
) -> str:
    """Link the payment (see link_payment) and say what became of the invoice."""
    reference = line.reference
    link_payment(db, line.id, invoice.id, actor=actor, confirm_amount_mismatch=confirmed, reason=reason, now=now)
    db.refresh(invoice)
    outcome = (
        "счёт оплачен, тариф подключён"
        if invoice.status == "paid"
        else "зачтён в счёт, остаток к оплате на странице счёта"
    )
    return f"Платёж {reference} привязан к счёту № {invoice.number}: {outcome}."


def dismiss_payment(db: Session, line_id: int, *, actor: User, reason: str | None, now: datetime) -> StatementLine:
    """The payment is not for any invoice of ours (a refund to make, another contract). Commits."""
    reason = clean_reason(reason, "почему платёж не наш")
    line = get_line(db, line_id)
    if line is None:
        raise SupportError("Платёж не найден.")
    if line.status != LineStatus.UNMATCHED:
        raise SupportError(f"Платёж {line.reference} уже разобран: {line.status_title.lower()}.")
    record_audit(
        db,
        actor=actor,
        account=None,
        action="support.payment_dismissed",
        before={"payment": line.reference, "line_id": line.id, "status": line.status},
        after={
            "payment": line.reference,
            "line_id": line.id,
            "status": LineStatus.DISMISSED.value,
            "amount": line.amount,
            "payer": line.payer_name,
        },
        reason=reason,
    )
    with _refused_by_documents(db):
        return statement_lines.dismiss_statement_line(db, line_id, actor=actor, reason=reason, now=now)


# --- what the staff member is told after an action ---------------------------------------------------------


def trial_done_message(period: PeriodInfo, account_name: str, *, closed_request: bool) -> str:
    return (
        f"Пробный период «{period.plan.title}» включён для «{account_name}» "
        f"по {period.last_day:%d.%m.%Y} включительно." + (" Заявка закрыта." if closed_request else "")
    )


def custom_plan_done_message(row: CustomPlan, account_name: str, *, closed_request: bool) -> str:
    return (
        f"Индивидуальный тариф «{row.as_plan().title}» за {format_amount(row.monthly_price)} ₽ в месяц "
        f"создан для {quoted(account_name)}: владелец увидит его на странице «Тарифы»."
        + (" Заявка закрыта." if closed_request else "")
    )


def invoice_paid_message(db: Session, number: str, invoice_id: int) -> str:
    upd = documents.get_upd_for_invoice(db, invoice_id)
    tail = f" УПД № {upd.number} {upd.status_title.lower()}." if upd is not None else ""
    return f"Счёт № {number} отмечен оплаченным, тариф подключён.{tail}"


def rights_refund_message(order_id: int, cut_on: date, amount: int, ukd_id: int | None) -> str:
    tail = " Сформирован УКД." if ukd_id else ""
    return (
        f"Права по заказу № {order_id} прекращаются с {cut_on:%d.%m.%Y}; "
        f"возврат {format_rub(amount)} ждёт выполнения в разделе «Деньги».{tail}"
    )
