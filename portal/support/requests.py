"""Owners' requests to support (a trial month, a plan over 1000 users): sending, the staff queue, taking, closing."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.accounts.models import Account, User
from portal.audit import record_audit
from portal.billing.custom_plans import get_plan_for_account, list_plans_for_account
from portal.billing.models import plan_title_for_code
from portal.billing.subscriptions import get_subscription_state
from portal.support.errors import MAX_COMMENT, MAX_REASON, RequestAlreadyOpen, SupportError, TooManyRequests
from portal.support.models import OPEN_STATUSES, RequestKind, RequestStatus, SupportRequest
from portal.timeutil import format_date, format_datetime
from portal.wording import plural_ru

REQUESTS_WINDOW = timedelta(days=1)


def _clean_comment(comment: str | None) -> str | None:
    text = (comment or "").strip()
    if len(text) > MAX_COMMENT:
        raise SupportError(f"Комментарий слишком длинный: не больше {MAX_COMMENT} символов.")
    return text or None


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
    return plural_ru(n, "заявку", "заявки", "заявок")


def trial_unavailable_reason(db: Session, account_id: int, now: datetime) -> str | None:
    """Why the owner cannot ask for a trial now (used, paid period, already asked), or None if they can."""
    state = get_subscription_state(db, account_id, now)
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
    return [p for p in list_plans_for_account(db, account_id) if not p.is_free]


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
        plan = get_plan_for_account(db, account_id, plan_code or "")
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


def _set_status(
    db: Session, row: SupportRequest, status: str, *, actor: User, action: str, note: str | None = None
) -> None:
    """The request's new status, in the audit log as the status before and after (with the note as its reason)."""
    before = {"request_id": row.id, "status": row.status}
    row.status = status
    after = {"request_id": row.id, "status": row.status}
    record_audit(db, actor=actor, account=row.account_id, action=action, before=before, after=after, reason=note)


def take_request(db: Session, request_id: int, *, actor: User, now: datetime) -> SupportRequest:
    """A staff member takes an open request, so colleagues see it is being handled. The caller commits."""
    row = _lock_request(db, request_id)
    if row.status != RequestStatus.OPEN:
        raise SupportError(f"Заявка уже {row.status_title.lower()}.")
    row.taken_by_user_id = actor.id
    row.taken_at = now
    _set_status(db, row, RequestStatus.IN_PROGRESS.value, actor=actor, action="support.request_taken")
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
    row.resolved_by_user_id = actor.id
    row.resolved_at = now
    row.staff_note = note
    _set_status(db, row, status, actor=actor, action="support.request_resolved", note=note)
    return row


def resolved_message(request_id: int, status: str) -> str:
    word = "выполнена" if status == RequestStatus.DONE else "отклонена"
    return f"Заявка № {request_id} {word}. Владелец увидит ответ на главной странице."


def close_with(db: Session, request_id: int | None, account_id: int, *, actor: User, note: str, now: datetime) -> None:
    """An action taken from a request closes it as done (only a request of the same account, still open)."""
    if request_id is None:
        return
    row = get_request(db, request_id)
    if row is None or row.account_id != account_id or not row.is_open:
        return
    resolve_request(db, row.id, actor=actor, status=RequestStatus.DONE.value, note=note, now=now)


def plan_title(code: str | None) -> str:
    return plan_title_for_code(code) if code else "—"
