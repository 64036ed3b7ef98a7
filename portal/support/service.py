"""Support: owners' requests, the staff console's actions and the reads behind its pages.

Every staff action takes a reason and writes one `support.*` audit record (who, when, before → after, why) in the
same transaction as the change; the services it calls (billing, documents) add their own technical records.
Documents' services commit themselves, so the support record is added before calling them: it is committed
with the change, or rolled back with it when the change is refused.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus, Role, User
from portal.accounts.phone import InvalidPhone, normalize_phone
from portal.audit import AuditLog, record_audit
from portal.billing import service as billing
from portal.billing.catalog import make_custom_plan
from portal.billing.display import format_storage, users_ru
from portal.billing.models import CustomPlan, Order, plan_title_for_code
from portal.documents import service as documents
from portal.documents.invoices import DocumentsError
from portal.documents.models import Invoice, InvoiceStatus, Requisites, StoredFile, Upd
from portal.money import format_rub
from portal.pagination import Key, KeysetPage, keyset_page
from portal.payments import ledger, statement_lines
from portal.payments.models import LineStatus, StatementLine
from portal.payments.statement import find_invoice_numbers
from portal.support.email import Attachment, EmailBackend, EmailError, build_message
from portal.support.models import OPEN_STATUSES, RequestKind, RequestStatus, SupportRequest
from portal.timeutil import format_date, format_datetime, msk_date

log = logging.getLogger(__name__)

MAX_REASON = 1000
MAX_COMMENT = 2000


class SupportError(ValueError):
    """The action is refused and nothing changed; the message is for the person."""


class RequestAlreadyOpen(SupportError):
    """The same kind of request is already open: the owner is shown it, and support is not asked twice."""

    def __init__(self, existing: SupportRequest) -> None:
        self.existing = existing
        super().__init__(
            f"Заявка № {existing.id} «{existing.kind_title}» уже отправлена {format_date(existing.created_at)} "
            f"(статус: {existing.status_title.lower()}). Новая не создана: поддержка ответит на эту."
        )


class TooManyRequests(SupportError):
    """SUPPORT_REQUESTS_PER_DAY reached: each request mails support and waits in the staff queue."""


REQUESTS_WINDOW = timedelta(days=1)


class AmountMismatchError(SupportError):
    """The payment's amount differs from the invoice's: linking needs an explicit confirmation."""


def clean_reason(reason: str | None, what: str = "причину") -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise SupportError(f"Укажите {what}: она попадёт в журнал действий.")
    if len(text) > MAX_REASON:
        raise SupportError(f"Слишком длинный текст: не больше {MAX_REASON} символов.")
    return text


def _clean_comment(comment: str | None) -> str | None:
    text = (comment or "").strip()
    if len(text) > MAX_COMMENT:
        raise SupportError(f"Комментарий слишком длинный: не больше {MAX_COMMENT} символов.")
    return text or None


def _state_summary(state: billing.SubscriptionState) -> dict[str, Any]:
    return {
        "plan": state.plan.code,
        "status": state.status,
        "paid_until": state.paid_until.isoformat() if state.paid_until else None,
        "trial_until": state.trial_until.isoformat() if state.trial_until else None,
        "trial_used": state.trial_used,
    }


# --- owners' requests -------------------------------------------------------------------------------------


def get_open_trial_request(db: Session, account_id: int) -> SupportRequest | None:
    return db.scalars(
        sa.select(SupportRequest).where(
            SupportRequest.account_id == account_id,
            SupportRequest.kind == RequestKind.TRIAL.value,
            SupportRequest.status.in_(OPEN_STATUSES),
        )
    ).first()


def get_open_request(db: Session, account_id: int, kind: str) -> SupportRequest | None:
    return db.scalars(
        sa.select(SupportRequest)
        .where(
            SupportRequest.account_id == account_id,
            SupportRequest.kind == kind,
            SupportRequest.status.in_(OPEN_STATUSES),
        )
        .order_by(SupportRequest.id)
    ).first()


def check_requests_per_day(db: Session, account_id: int, now: datetime, per_day: int) -> None:
    """Raise TooManyRequests when the account has sent `per_day` requests in the last 24 hours."""
    since = now - REQUESTS_WINDOW
    recent = list(
        db.scalars(
            sa.select(SupportRequest.created_at)
            .where(SupportRequest.account_id == account_id, SupportRequest.created_at > since)
            .order_by(SupportRequest.created_at)
        )
    )
    if len(recent) < per_day:
        return
    # The place frees up when the oldest request of the window turns 24 hours old.
    free_at = recent[len(recent) - per_day] + REQUESTS_WINDOW
    raise TooManyRequests(
        f"За сутки компания уже отправила {per_day} {_requests_ru(per_day)} — больше нельзя. "
        f"Новую можно будет отправить после {format_datetime(free_at)} (мск); "
        "поддержка ответит на уже отправленные."
    )


def _requests_ru(n: int) -> str:
    last2, last = n % 100, n % 10
    if last == 1 and last2 != 11:
        return "заявку"
    if 2 <= last <= 4 and not 12 <= last2 <= 14:
        return "заявки"
    return "заявок"


def trial_unavailable_reason(db: Session, account_id: int, now: datetime) -> str | None:
    """Why the owner cannot ask for a trial now (used, paid period, already asked), or None if they can."""
    state = billing.get_subscription_state(db, account_id, now)
    if state.trial_used:
        return (
            "Пробный месяц уже был использован: он предоставляется один раз. "
            "Выберите тариф и оплатите его на странице «Тарифы»."
        )
    if state.is_paid and state.paid_until is not None:
        return (
            f"Тариф оплачен по {format_date(state.paid_until)}: пробный месяц включается только "
            "без оплаченного периода."
        )
    pending = get_open_trial_request(db, account_id)
    if pending is not None:
        return (
            f"Заявка на пробный месяц уже отправлена {format_date(pending.created_at)} "
            f"(статус: {pending.status_title.lower()}). Поддержка ответит на неё."
        )
    return None


def trial_plans(db: Session, account_id: int) -> list[Any]:
    """Plans that can be tried: every paid plan, the account's custom plans included."""
    return [p for p in billing.list_plans_for_account(db, account_id) if not p.is_free]


def create_request(
    db: Session,
    *,
    actor: User,
    account_id: int,
    kind: str,
    now: datetime,
    plan_code: str | None = None,
    users_expected: int | None = None,
    comment: str | None = None,
    per_day: int | None = None,
) -> SupportRequest:
    """The owner asks for a trial or a plan over 1000 users. The caller commits.

    An open request of the same kind raises RequestAlreadyOpen (with it); `per_day` new requests in 24 hours at
    most (SUPPORT_REQUESTS_PER_DAY), else TooManyRequests.

    A concurrent duplicate trial request loses on the partial unique index: the session is rolled back and the
    person is told the request already exists.
    """
    try:
        kind = RequestKind(kind).value
    except ValueError:
        raise SupportError("Выберите, о чём заявка.") from None
    comment = _clean_comment(comment)
    if kind == RequestKind.TRIAL:
        plan = billing.get_plan_for_account(db, account_id, plan_code or "")
        if plan is None or plan.is_free:
            raise SupportError("Выберите платный тариф, который хотите попробовать.")
        plan_code = plan.code
        users_expected = None
        problem = trial_unavailable_reason(db, account_id, now)
        if problem is not None:
            raise SupportError(problem)
    elif kind == RequestKind.LARGE_PLAN:
        plan_code = None
        if users_expected is None or users_expected <= 1000:
            raise SupportError("Укажите, сколько будет пользователей: больше 1000.")
    else:
        plan_code = users_expected = None
        if not comment:
            raise SupportError("Опишите вопрос в комментарии.")
    existing = get_open_request(db, account_id, kind)
    if existing is not None:
        raise RequestAlreadyOpen(existing)
    if per_day is not None:
        check_requests_per_day(db, account_id, now, per_day)
    row = SupportRequest(
        account_id=account_id,
        kind=kind,
        plan_code=plan_code,
        users_expected=users_expected,
        comment=comment,
        status=RequestStatus.OPEN.value,
        created_by_user_id=actor.id,
        created_at=now,
    )
    db.add(row)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        raise SupportError("Заявка на пробный месяц уже отправлена. Поддержка ответит на неё.") from None
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="support.request_created",
        after=_request_dict(row),
        reason=comment,
    )
    return row


def _request_dict(row: SupportRequest) -> dict[str, Any]:
    return {
        "request_id": row.id,
        "kind": row.kind,
        "plan": row.plan_code,
        "users_expected": row.users_expected,
        "status": row.status,
    }


def list_requests_for_account(db: Session, account_id: int, limit: int = 5) -> list[SupportRequest]:
    """The owner's latest requests, newest first: one indexed query, cheap enough for the dashboard."""
    return list(db.scalars(_requests_for_account_stmt(limit), {"account_id": account_id}))


@functools.cache
def _requests_for_account_stmt(limit: int) -> sa.Select[tuple[SupportRequest]]:
    # Every page of an owner asks it (the header's requests): built once, only the account changes.
    return (
        sa.select(SupportRequest)
        .where(SupportRequest.account_id == sa.bindparam("account_id"))
        .order_by(SupportRequest.created_at.desc(), SupportRequest.id.desc())
        .limit(limit)
    )


def list_queue(db: Session, limit: int = 200) -> list[tuple[SupportRequest, Account]]:
    """Open and in-progress requests, oldest first: the support queue."""
    rows = db.execute(
        sa.select(SupportRequest, Account)
        .join(Account, Account.id == SupportRequest.account_id)
        .where(SupportRequest.status.in_(OPEN_STATUSES))
        .order_by(SupportRequest.created_at, SupportRequest.id)
        .limit(limit)
    ).all()
    return [(r, a) for r, a in rows]


def list_recently_closed(db: Session, limit: int = 10) -> list[tuple[SupportRequest, Account]]:
    rows = db.execute(
        sa.select(SupportRequest, Account)
        .join(Account, Account.id == SupportRequest.account_id)
        .where(SupportRequest.status.not_in(OPEN_STATUSES))
        .order_by(SupportRequest.resolved_at.desc(), SupportRequest.id.desc())
        .limit(limit)
    ).all()
    return [(r, a) for r, a in rows]


def get_request(db: Session, request_id: int) -> SupportRequest | None:
    return db.get(SupportRequest, request_id)


def _lock_request(db: Session, request_id: int) -> SupportRequest:
    row = db.scalars(
        sa.select(SupportRequest)
        .where(SupportRequest.id == request_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if row is None:
        raise SupportError("Заявка не найдена.")
    return row


def take_request(db: Session, request_id: int, *, actor: User, now: datetime) -> SupportRequest:
    """A staff member takes an open request, so colleagues see it is being handled. The caller commits."""
    row = _lock_request(db, request_id)
    if row.status != RequestStatus.OPEN:
        raise SupportError(f"Заявка уже {row.status_title.lower()}.")
    row.status = RequestStatus.IN_PROGRESS.value
    row.taken_by_user_id = actor.id
    row.taken_at = now
    record_audit(
        db,
        actor=actor,
        account=row.account_id,
        action="support.request_taken",
        before={"request_id": row.id, "status": RequestStatus.OPEN.value},
        after={"request_id": row.id, "status": row.status},
    )
    return row


def resolve_request(
    db: Session, request_id: int, *, actor: User, status: str, note: str | None, now: datetime
) -> SupportRequest:
    """Close a request as done or rejected; the note is shown to the owner. The caller commits."""
    if status not in (RequestStatus.DONE, RequestStatus.REJECTED):
        raise SupportError("Выберите, чем закончилась заявка: выполнена или отклонена.")
    note = (note or "").strip()  # kept as written (line breaks, no-break spaces): the owner reads it
    if not note:
        raise SupportError("Напишите ответ владельцу: он увидит его на главной странице.")
    if len(note) > MAX_REASON:
        raise SupportError(f"Слишком длинный ответ: не больше {MAX_REASON} символов.")
    row = _lock_request(db, request_id)
    if not row.is_open:
        raise SupportError(f"Заявка уже закрыта: {row.status_title.lower()}.")
    before = row.status
    row.status = status
    row.resolved_by_user_id = actor.id
    row.resolved_at = now
    row.staff_note = note
    record_audit(
        db,
        actor=actor,
        account=row.account_id,
        action="support.request_resolved",
        before={"request_id": row.id, "status": before},
        after={"request_id": row.id, "status": row.status},
        reason=note,
    )
    return row


def _close_with(db: Session, request_id: int | None, account_id: int, *, actor: User, note: str, now: datetime) -> None:
    """An action taken from a request closes it as done (only a request of the same account, still open)."""
    if request_id is None:
        return
    row = get_request(db, request_id)
    if row is None or row.account_id != account_id or not row.is_open:
        return
    resolve_request(db, row.id, actor=actor, status=RequestStatus.DONE.value, note=note, now=now)


# --- trial and custom plans -------------------------------------------------------------------------------


def switch_on_trial(
    db: Session,
    *,
    actor: User,
    account_id: int,
    plan_code: str,
    reason: str | None,
    now: datetime,
    request_id: int | None = None,
) -> billing.PeriodInfo:
    """One free month of any plan, once per account (billing refuses the second time). The caller commits."""
    reason = clean_reason(reason)
    before = billing.get_subscription_state(db, account_id, now)
    try:
        period = billing.start_trial(db, actor=actor, account_id=account_id, plan_code=plan_code, now=now)
    except billing.TrialError as exc:
        raise SupportError(str(exc)) from None
    after = billing.get_subscription_state(db, account_id, now)
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="support.trial_switched_on",
        before=_state_summary(before),
        after=_state_summary(after) | {"request_id": request_id},
        reason=reason,
    )
    _close_with(
        db,
        request_id,
        account_id,
        actor=actor,
        note=f"Пробный период тарифа «{period.plan.title}» включён по {format_date(period.last_day)} включительно.",
        now=now,
    )
    return period


def _custom_dict(row: CustomPlan | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "code": row.code,
        "seats": row.seats,
        "storage_bytes": row.storage_bytes,
        "monthly_price": row.monthly_price,
        "active": row.active,
    }


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
    before = _custom_dict(existing)
    row = billing.create_custom_plan(
        db,
        actor=actor,
        account_id=account_id,
        seats=seats,
        storage_bytes=storage_bytes,
        monthly_price=monthly_price,
        now=now,
    )
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="support.custom_plan_set",
        before=before,
        after=_custom_dict(row) | {"request_id": request_id},
        reason=reason,
    )
    _close_with(
        db,
        request_id,
        account_id,
        actor=actor,
        note=(
            f"Для вас создан индивидуальный тариф: до {users_ru(seats)}, {format_storage(storage_bytes)}, "
            f"{format_rub(monthly_price)} в месяц. Он на странице «Тарифы» — его можно оплатить картой или по счёту."
        ),
        now=now,
    )
    return row


# --- invoices ---------------------------------------------------------------------------------------------


def _invoice(db: Session, invoice_id: int) -> Invoice:
    invoice = db.get(Invoice, invoice_id)
    if invoice is None:
        raise SupportError("Счёт не найден.")
    return invoice


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
    invoice = _invoice(db, invoice_id)
    if invoice.status == InvoiceStatus.PAID:
        raise SupportError(
            f"Счёт № {invoice.number} уже оплачен ({invoice.payment_reference}): повторно отметить оплату нельзя."
        )
    if invoice.status == InvoiceStatus.CANCELED:
        raise SupportError(f"Счёт № {invoice.number} отменён: отметить его оплаченным нельзя.")
    record_audit(
        db,
        actor=actor,
        account=invoice.account_id,
        action="support.invoice_marked_paid",
        before={"invoice": invoice.number, "status": invoice.status, "amount": invoice.amount},
        after={
            "invoice": invoice.number,
            "status": InvoiceStatus.PAID.value,
            "amount": invoice.amount,
            "reference": reference,
            "paid_on": paid_on.isoformat(),
        },
        reason=reason,
    )
    try:
        return statement_lines.mark_invoice_paid(
            db, invoice_id, actor=actor, bank_reference=reference, paid_on=paid_on, now=now, config=config
        )
    except DocumentsError as exc:
        db.rollback()
        raise SupportError(str(exc)) from None


def cancel_invoice(db: Session, invoice_id: int, *, actor: User, reason: str | None, now: datetime) -> Invoice:
    """Cancel an unpaid invoice (and its order); its number is never reused. Commits."""
    reason = clean_reason(reason)
    invoice = _invoice(db, invoice_id)
    if invoice.status == InvoiceStatus.PAID:
        raise SupportError(f"Счёт № {invoice.number} уже оплачен: отменить его нельзя.")
    if invoice.status == InvoiceStatus.CANCELED:
        raise SupportError(f"Счёт № {invoice.number} уже отменён.")
    record_audit(
        db,
        actor=actor,
        account=invoice.account_id,
        action="support.invoice_canceled",
        before={"invoice": invoice.number, "status": invoice.status, "amount": invoice.amount},
        after={"invoice": invoice.number, "status": InvoiceStatus.CANCELED.value},
        reason=reason,
    )
    try:
        return documents.cancel_invoice(db, invoice_id, actor=actor, reason=reason, now=now)
    except DocumentsError as exc:
        db.rollback()
        raise SupportError(str(exc)) from None


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
    try:
        return statement_lines.link_statement_line(
            db,
            line_id,
            invoice_id,
            actor=actor,
            confirm_amount_mismatch=bool(confirm_amount_mismatch),
            now=now,
            config=config,
        )
    except DocumentsError as exc:
        db.rollback()
        raise SupportError(str(exc)) from None


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
    try:
        return statement_lines.dismiss_statement_line(db, line_id, actor=actor, reason=reason, now=now)
    except DocumentsError as exc:
        db.rollback()
        raise SupportError(str(exc)) from None


# --- resending documents ----------------------------------------------------------------------------------


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


# --- finding an account -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountHit:
    account: Account
    matched_by: str
    requisites: Requisites | None
    owners: list[User]


_ID_QUERY = re.compile(r"^(?:#|№|id)?\s*(\d{1,9})$", re.IGNORECASE)
_PHONE_CHARS = re.compile(r"^[\d\s()+\-]+$")
_QUOTES = "«»\"'„“”"


def _name_tokens(query: str) -> list[str]:
    text = query
    for q in _QUOTES:
        text = text.replace(q, " ")
    return [t for t in text.split() if t]


def _like_escape(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _name_matches(db: Session, tokens: Sequence[str], limit: int) -> list[int]:
    """Accounts whose name or legal name holds every word, case-insensitively (Cyrillic included)."""
    if db.get_bind().dialect.name == "postgresql":
        # `name ILIKE '%word%'` with the pattern built here: the trigram indexes (ix_accounts_name_trgm,
        # ix_requisites_name_trgm) answer it; `lower(name) LIKE …` would scan every name.
        def every(col: Any) -> Any:
            return sa.and_(*(col.ilike(f"%{_like_escape(t)}%", escape="/") for t in tokens))

        ids = set(db.scalars(sa.select(Account.id).where(every(Account.name)).limit(limit)))
        ids |= set(db.scalars(sa.select(Requisites.account_id).where(every(Requisites.name)).limit(limit)))
        return sorted(ids)
    # SQLite's lower() knows only ASCII, so a local database is searched here; production runs on PostgreSQL.
    folded = [t.casefold() for t in tokens]
    names = db.execute(sa.select(Account.id, Account.name)).all()
    names += db.execute(sa.select(Requisites.account_id, Requisites.name)).all()
    return sorted({i for i, name in names if all(t in (name or "").casefold() for t in folded)})[:limit]


def search_accounts(db: Session, query: str | None, *, limit: int = 50) -> list[AccountHit]:
    """By account number, ИНН, a member's phone (or its last digits) or the company's (legal) name."""
    text = " ".join((query or "").split())[:100]
    if not text:
        return []
    matched: dict[int, str] = {}

    def add(ids: Any, how: str) -> None:
        for account_id in ids:
            matched.setdefault(account_id, how)

    digits = re.sub(r"\D", "", text)
    id_match = _ID_QUERY.match(text)
    if id_match:
        account_id = int(id_match.group(1))
        if db.get(Account, account_id) is not None:
            add([account_id], "номер аккаунта")
    if _PHONE_CHARS.match(text) and len(digits) >= 4:
        add(
            db.scalars(sa.select(Requisites.account_id).where(Requisites.inn.startswith(digits)).limit(limit)),
            "ИНН",
        )
        phones: list[str] = []
        try:
            phones.append(normalize_phone(text))
        except InvalidPhone:
            pass
        phone_filter = (
            User.phone.in_(phones) if phones else User.phone.like(f"%{digits}%")
        )  # a full number exactly, else its digits anywhere (e.g. the last seven; ix_users_phone_trgm on PostgreSQL)
        if phones or len(digits) >= 5:
            add(
                db.scalars(
                    sa.select(Membership.account_id)
                    .join(User, User.id == Membership.user_id)
                    .where(phone_filter)
                    .distinct()
                    .limit(limit)
                ),
                "телефон сотрудника",
            )
    tokens = _name_tokens(text)
    if tokens and any(ch.isalpha() for ch in text):
        add(_name_matches(db, tokens, limit), "название")
    ids = list(matched)[:limit]
    if not ids:
        return []
    accounts = {a.id: a for a in db.scalars(sa.select(Account).where(Account.id.in_(ids)))}
    requisites = {r.account_id: r for r in db.scalars(sa.select(Requisites).where(Requisites.account_id.in_(ids)))}
    owners: dict[int, list[User]] = {}
    for m_account_id, user in db.execute(
        sa.select(Membership.account_id, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.account_id.in_(ids), Membership.role == Role.OWNER.value)
        .order_by(User.id)
    ).all():
        owners.setdefault(m_account_id, []).append(user)
    hits = [AccountHit(accounts[i], matched[i], requisites.get(i), owners.get(i, [])) for i in ids if i in accounts]
    hits.sort(key=lambda h: h.account.name.casefold())
    return hits


# --- the account page -------------------------------------------------------------------------------------


@dataclass
class AccountOverview:
    account: Account
    state: billing.SubscriptionState
    seats_used: int
    storage_used: int
    members: list[tuple[Membership, User]]
    requisites: Requisites | None
    custom_plans: list[CustomPlan]
    requests: list[SupportRequest]
    invoices: list[Invoice]
    upds_by_invoice: dict[int, Upd]
    pending_orders: list[Any]
    paid_orders: list[Any]
    payments: list[tuple[Any, Any]]
    crm_connection: Any
    crm_runs: list[Any]
    crm_entries: dict[int, list[Any]]
    crm_problems: list[Any]
    audit: list[AuditLog]
    owners: list[User] = field(default_factory=list)
    orders_by_id: dict[int, Any] = field(default_factory=dict)

    @property
    def upds(self) -> list[Upd]:
        return sorted(self.upds_by_invoice.values(), key=lambda u: (u.doc_date, u.id), reverse=True)


def get_account(db: Session, account_id: int) -> Account | None:
    return db.get(Account, account_id)


def get_account_overview(db: Session, account: Account, now: datetime) -> AccountOverview:
    """Everything the account page shows, each part a bounded query."""
    from portal.payments.service import list_payments
    from portal.seats.crm import outbox, sync

    state = billing.get_subscription_state(db, account.id, now)
    usage = billing.get_usage(db, account)
    members = [
        (m, u)
        for m, u in db.execute(
            sa.select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.account_id == account.id, Membership.role.in_([Role.OWNER.value, Role.ACCOUNTANT.value]))
            .order_by(Membership.role.desc(), User.id)
        ).all()
    ]
    invoices = list(
        db.scalars(sa.select(Invoice).where(Invoice.account_id == account.id).order_by(Invoice.id.desc()).limit(50))
    )
    upds = {
        u.invoice_id: u
        for u in db.scalars(sa.select(Upd).where(Upd.account_id == account.id).order_by(Upd.id.desc()).limit(50))
    }
    order_ids = [i.order_id for i in invoices]
    orders = {o.id: o for o in db.scalars(sa.select(Order).where(Order.id.in_(order_ids)))} if order_ids else {}
    runs = sync.list_runs(db, account.id, limit=10)
    entries: dict[int, list[Any]] = {}
    if runs:
        from portal.seats.crm.models import CrmSyncEntry

        for entry in db.scalars(
            sa.select(CrmSyncEntry)
            .where(CrmSyncEntry.run_id.in_([r.id for r in runs]))
            .order_by(CrmSyncEntry.id)
            .limit(500)
        ):
            entries.setdefault(entry.run_id, []).append(entry)
    from portal.seats.crm.models import OutboxStatus

    return AccountOverview(
        account=account,
        state=state,
        seats_used=usage.active_users,
        storage_used=usage.storage_used_bytes,
        members=members,
        owners=[u for m, u in members if m.role == Role.OWNER.value and m.status == MembershipStatus.ACTIVE.value],
        requisites=documents.get_requisites(db, account.id),
        custom_plans=billing.list_custom_plans(db, account.id, include_inactive=True),
        requests=list_requests_for_account(db, account.id, limit=20),
        invoices=invoices,
        upds_by_invoice=upds,
        pending_orders=billing.list_orders(db, account.id, statuses=("pending",), limit=20),
        paid_orders=billing.list_orders(db, account.id, statuses=("paid",), limit=20),
        payments=list_payments(db, account.id, limit=50),
        crm_connection=sync.get_connection(db, account.id),
        crm_runs=runs,
        crm_entries=entries,
        crm_problems=outbox.list_outbox(
            db, account.id, statuses=(OutboxStatus.FAILED.value, OutboxStatus.REFUSED.value), limit=50
        ),
        audit=list_audit(db, account_id=account.id, per_page=30).rows,
        orders_by_id=orders,
    )


def count_unmatched_lines(db: Session) -> int:
    return int(
        db.scalar(
            sa.select(sa.func.count()).select_from(StatementLine).where(StatementLine.status == LineStatus.UNMATCHED)
        )
        or 0
    )


# --- the audit log ----------------------------------------------------------------------------------------

SYSTEM_ACTOR = "system"  # the filter value for records made by the portal itself (tick, webhooks)


AUDIT_KEY_TYPES = (int,)


def list_audit(
    db: Session,
    *,
    account_id: int | None = None,
    actor: int | str | None = None,
    action: str | None = None,
    after: Key | None = None,
    before: Key | None = None,
    per_page: int = 50,
) -> KeysetPage[AuditLog]:
    """Audit records newest first, filtered, one page read from an index after (or before) a record's key.

    Only reads: the log is never changed. No count and no OFFSET: the last page of a long log costs what the first
    does (ix_audit_log_account_id_id / ix_audit_log_action_id / ix_audit_log_actor_id serve the filters).
    """
    conditions = []
    if account_id is not None:
        conditions.append(AuditLog.account_id == account_id)
    if actor == SYSTEM_ACTOR:
        conditions.append(AuditLog.actor_user_id.is_(None))
    elif isinstance(actor, int):
        conditions.append(AuditLog.actor_user_id == actor)
    if action:
        if action.endswith("."):
            conditions.append(AuditLog.action.startswith(action, autoescape=True))
        else:
            conditions.append(AuditLog.action == action)
    return keyset_page(
        db,
        sa.select(AuditLog).where(*conditions),
        [AuditLog.id],
        lambda entry: (entry.id,),
        limit=per_page,
        after=after,
        before=before,
    )


def list_audit_actions(selected: str | None = None) -> list[str]:
    """The actions the filter offers: the portal's known list (no DISTINCT over the whole log), and a selected one."""
    known = set(ACTION_TITLES)
    if selected and not selected.endswith("."):
        known.add(selected)
    return sorted(known)


def list_staff(db: Session) -> list[User]:
    return list(db.scalars(sa.select(User).where(User.is_staff.is_(True)).order_by(User.name)))


def accounts_by_id(db: Session, ids: Sequence[int | None]) -> dict[int, Account]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {a.id: a for a in db.scalars(sa.select(Account).where(Account.id.in_(wanted)))}


def users_by_id(db: Session, ids: Sequence[int | None]) -> dict[int, User]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {u.id: u for u in db.scalars(sa.select(User).where(User.id.in_(wanted)))}


ACTION_TITLES = {
    "support.request_created": "Заявка в поддержку",
    "support.request_taken": "Заявка взята в работу",
    "support.request_resolved": "Заявка закрыта",
    "support.trial_switched_on": "Включён пробный период",
    "support.custom_plan_set": "Индивидуальный тариф",
    "support.invoice_marked_paid": "Счёт отмечен оплаченным",
    "support.invoice_canceled": "Счёт отменён поддержкой",
    "support.statement_imported": "Загружена выписка",
    "support.payment_linked": "Платёж привязан к счёту",
    "support.payment_dismissed": "Платёж отклонён: не наш",
    "support.document_resent": "Документ отправлен повторно",
    "billing.trial_started": "Начат пробный период",
    "billing.trial_expired": "Пробный период закончился",
    "billing.order_created": "Заказ создан",
    "billing.order_paid": "Заказ оплачен",
    "billing.order_paid_unapplied": "Оплата не применена",
    "billing.order_canceled": "Заказ отменён",
    "billing.order_expired": "Заказ истёк",
    "billing.custom_plan_set": "Индивидуальный тариф сохранён",
    "billing.custom_plan_deactivated": "Индивидуальный тариф снят",
    "billing.renewal_started": "Начался продлённый период",
    "billing.scheduled_change_applied": "Сменился тариф",
    "billing.scheduled_change_canceled": "Запланированный период отменён",
    "billing.scheduled_order_opened": "Открыта оплата запланированного перехода",
    "billing.expired": "Оплаченный период закончился",
    "billing.rights_ended": "Права прекращены досрочно",
    "documents.requisites_saved": "Реквизиты сохранены",
    "documents.invoice_issued": "Выставлен счёт",
    "documents.card_order_recorded": "Заказ компании картой: будет УПД",
    "documents.upd_not_due": "УПД не будет: период отменён до начала",
    "documents.invoice_paid": "Счёт оплачен",
    "documents.invoice_canceled": "Счёт отменён",
    "documents.ukd_numbered": "Составлен корректировочный документ (УКД)",
    "documents.advance_invoice_numbered": "Составлен счёт-фактура на аванс",
    "payments.refund_requested": "Запрошен возврат",
    "payments.refunded": "Деньги возвращены",
    "payments.refund_canceled": "Возврат отменён",
    "payments.released": "Деньги заказа возвращены на баланс",
    "payments.attention_resolved": "Вопрос по платежу решён",
    "payments.rights_refunded": "Возврат за неиспользованный период",
    "documents.statement_line_linked": "Платёж из выписки привязан",
    "documents.statement_line_dismissed": "Платёж из выписки отклонён",
    "documents.edo_sent": "Документ отправлен в ЭДО",
    "documents.edo_status": "Статус документа в ЭДО изменился",
    "documents.edo_rejected": "Покупатель отклонил документ в ЭДО",
    "documents.edo_resend": "Документ отправлен в ЭДО повторно",
    "payment.started": "Платёж начат",
    "payment.succeeded": "Платёж прошёл",
    "payment.canceled": "Платёж не прошёл",
    "payment.flagged": "Платёж на проверке",
    "seats.user_added": "Пользователь добавлен",
    "seats.user_deactivated": "Пользователь отключён",
    "seats.user_reactivated": "Пользователь включён",
    "seats.role_changed": "Роль изменена",
    "seats.departments_changed": "Отделы изменены",
    "seats.department_created": "Отдел создан",
    "seats.department_renamed": "Отдел переименован",
    "seats.department_deleted": "Отдел удалён",
    "seats.crm_linked": "Связан с CRM",
    "crm.connected": "CRM подключена",
    "crm.disconnected": "CRM отключена",
    "account.registered": "Компания зарегистрирована",
    "staff.granted": "Назначен сотрудник поддержки",
}

ACTION_GROUPS = {
    "support.": "Все действия поддержки",
    "billing.": "Все: тарифы и заказы",
    "documents.": "Все: документы",
    "payment.": "Все: платежи картой",
    "payments.": "Все: деньги компании",
    "seats.": "Все: пользователи",
    "crm.": "Все: CRM",
}


def action_title(action: str) -> str:
    return ACTION_TITLES.get(action, action)


def plan_title(code: str | None) -> str:
    return plan_title_for_code(code) if code else "—"


# --- how an audit record reads ----------------------------------------------------------------------------

FIELD_TITLES = {
    "plan": "Тариф",
    "topups": "Повышаются и оплаченные периоды",
    "part": "Часть заказа",
    "balance_added": "На баланс",
    "status": "Статус",
    "paid_until": "Оплачен по",
    "trial_until": "Пробный до",
    "trial_used": "Пробный использован",
    "period_start": "Начало периода",
    "period_end": "Конец периода (искл.)",
    "scheduled": "Запланировано",
    "request_id": "Заявка №",
    "kind": "Вид",
    "users_expected": "Пользователей ожидается",
    "code": "Код тарифа",
    "seats": "Пользователей",
    "storage_bytes": "Хранилище",
    "monthly_price": "Цена в месяц",
    "active": "Действует",
    "invoice": "Счёт",
    "invoice_status": "Статус счёта",
    "amount": "Сумма",
    "payment_amount": "Сумма платежа",
    "invoice_amount": "Сумма счёта",
    "amount_mismatch_confirmed": "Расхождение суммы подтверждено",
    "reference": "Платёжный документ",
    "paid_on": "Дата оплаты",
    "payment": "Платёж",
    "payer": "Плательщик",
    "line_id": "Строка выписки",
    "upd": "УПД",
    "document": "Документ",
    "to": "Кому",
    "files": "Файлы",
    "file": "Файл",
    "import_id": "Загрузка №",
    "incoming": "Поступлений",
    "matched": "Сопоставлено",
    "unmatched": "Не сопоставлено",
    "duplicates": "Уже были",
    "order_id": "Заказ №",
    "order_status": "Статус заказа",
    "months": "Месяцев",
    "starts_on": "С",
    "ends_on": "По (искл.)",
    "last_day": "Последний день",
    "payer_type": "Способ оплаты",
    "proration": "Доплата",
    "license_version": "Версия договора",
    "name": "Наименование",
    "inn": "ИНН",
    "kpp": "КПП",
    "ogrn": "ОГРН",
    "address": "Адрес",
    "email": "Почта",
    "bank_name": "Банк",
    "bik": "БИК",
    "account_number": "Расчётный счёт",
    "correspondent_account": "Корр. счёт",
    "edo_id": "ID в ЭДО",
    "valid_until": "Действителен до",
    "pdf_sha256": "SHA-256 файла",
    "crm_account_id": "ID аккаунта CRM",
    "crm_account": "Аккаунт CRM",
    "subdomain": "Поддомен",
    "number": "Номер",
    "issued_on": "Дата",
    "order": "Заказ",
    "role": "Роль",
    "phone": "Телефон",
    "source": "Источник",
    "trial_used_at": "Пробный включён",
    # The team and the CRM (seats.*, crm.*): people read «Пользователь № 12», never `user_id`.
    "user_id": "Пользователь №",
    "crm_user_id": "Пользователь в CRM №",
    "department_ids": "Отделы №",
    "departments": "Отделы",
    "linked_users": "Связанных с CRM пользователей",
    "crm_departments": "Отделов из CRM",
    "budget_per_hour": "Кодов в час",
    "sessions": "Завершено сеансов",
}
MONEY_KEYS = {"amount", "monthly_price", "payment_amount", "invoice_amount", "proration", "part"}
VALUE_TITLES = {
    "scheduled": "запланирован, оплата позже",
    "free": "бесплатный",
    "trial": "пробный",
    "paid": "оплачен",
    "issued": "ожидает оплаты",
    "pending": "ожидает оплаты",
    "canceled": "отменён",
    "expired": "истёк",
    "unmatched": "не сопоставлен",
    "matched": "сопоставлен",
    "linked": "привязан вручную",
    "dismissed": "отклонён",
    "open": "отправлена",
    "in_progress": "в работе",
    "done": "выполнена",
    "rejected": "отклонена",
    "large_plan": "более 1000 пользователей",
    "card": "карта",
    "invoice": "счёт",
    "new": "покупка",
    "renewal": "продление",
    "upgrade": "переход на больший",
    "downgrade": "переход на меньший",
    "org": "организация",
    "ip": "ИП",
    "owner": "владелец",
    "accountant": "бухгалтер",
    "member": "сотрудник",
    "portal": "портал",
    "messenger": "мессенджер",
    "crm": "CRM",
    "active": "активен",
    "deactivated": "отключён",
    "left": "покинул компанию",
}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Change:
    label: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def format_audit_value(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "да" if value else "нет"
    if isinstance(value, int) and key in MONEY_KEYS:
        return format_rub(value)
    if isinstance(value, int) and key == "storage_bytes":
        return format_storage(value)
    if isinstance(value, str):
        if key in ("plan", "code") and value:
            return plan_title_for_code(value)
        if _ISO_DATE.match(value):
            return f"{value[8:10]}.{value[5:7]}.{value[:4]}"
        return VALUE_TITLES.get(value, value)
    if isinstance(value, list):
        return "; ".join(format_audit_value(key, v) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{FIELD_TITLES.get(k, k)}: {format_audit_value(k, v)}" for k, v in value.items())
    return str(value)


def audit_changes(entry: AuditLog) -> list[Change]:
    """The record's before → after as readable lines; keys present on one side only show «—» on the other."""
    before = entry.before or {}
    after = entry.after or {}
    # A field empty on both sides (e.g. no request, no paid period) says nothing: it is left out.
    keys = [
        k
        for k in dict.fromkeys([*after.keys(), *before.keys()])
        if not (before.get(k) is None and after.get(k) is None)
    ]
    return [
        Change(
            FIELD_TITLES.get(k, k),
            format_audit_value(k, before[k]) if k in before else None,
            format_audit_value(k, after[k]) if k in after else None,
        )
        for k in keys
    ]
