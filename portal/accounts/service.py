"""Sign-in by SMS code, registration of a new company, memberships and staff."""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus, Role, SmsCode, Source, User, UserSession
from portal.accounts.sms import SmsBackend
from portal.audit import AuditLog, record_audit
from portal.db import memo


class CodeError(ValueError):
    """A sign-in code was not accepted; the message is for the person."""


def _hash_code(secret: str, phone: str, code: str) -> str:
    return hmac.new(secret.encode(), f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()


SMS_BUDGET_WINDOW = timedelta(hours=1)
SMS_BUDGET_ALERT = "accounts.sms_budget_reached"


class SmsBudgetReached(Exception):
    """SMS_BUDGET_PER_HOUR codes went out in the last hour: no more until the oldest of them is an hour old.

    Every code costs the vendor money; the per-phone and per-address limits do not stop many phones and addresses
    at once, so the whole portal has a ceiling, counted in the database so that it holds across servers."""

    def __init__(self, minutes: int) -> None:
        self.minutes = minutes
        super().__init__(f"SMS budget reached; next code in {minutes} min")


def sms_budget_wait(db: Session, *, now: datetime, budget: int) -> int | None:
    """Minutes until a code may be sent again when `budget` codes were created in the last hour, else None."""
    since = now - SMS_BUDGET_WINDOW
    recent = db.scalar(sa.select(sa.func.count()).select_from(SmsCode).where(SmsCode.created_at > since)) or 0
    if recent < budget:
        return None
    # The budget frees a place when the code `recent - budget` places from the oldest turns an hour old.
    freeing = db.scalar(
        sa.select(SmsCode.created_at)
        .where(SmsCode.created_at > since)
        .order_by(SmsCode.created_at, SmsCode.id)
        .offset(recent - budget)
        .limit(1)
    )
    seconds = ((freeing + SMS_BUDGET_WINDOW) - now).total_seconds() if freeing is not None else 60
    return max(1, math.ceil(seconds / 60))


def claim_sms_budget_alert(db: Session, *, now: datetime, budget: int) -> bool:
    """Record the audit alert unless one was recorded in the last hour; True means staff are to be told now."""
    since = now - SMS_BUDGET_WINDOW
    latest = db.scalar(
        sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.action == SMS_BUDGET_ALERT, AuditLog.at > since)
    )
    if latest:
        return False
    record_audit(db, actor=None, account=None, action=SMS_BUDGET_ALERT, after={"budget_per_hour": budget})
    db.commit()
    return True


def send_code(
    db: Session,
    *,
    phone: str,
    sms: SmsBackend,
    secret: str,
    now: datetime,
    ttl_seconds: int = 300,
    budget_per_hour: int | None = None,
) -> None:
    """Issue a fresh 6-digit code; earlier unused codes of that phone stop working.

    With `budget_per_hour` (SMS_BUDGET_PER_HOUR) raise SmsBudgetReached, and send nothing, once that many codes
    went out in the last hour."""
    if budget_per_hour is not None:
        wait = sms_budget_wait(db, now=now, budget=budget_per_hour)
        if wait is not None:
            raise SmsBudgetReached(wait)
    code = f"{secrets.randbelow(10**6):06d}"
    db.execute(sa.update(SmsCode).where(SmsCode.phone == phone, SmsCode.consumed_at.is_(None)).values(consumed_at=now))
    db.add(
        SmsCode(
            phone=phone,
            code_hash=_hash_code(secret, phone, code),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    db.commit()
    sms.send(phone, f"Код для входа в кабинет: {code}. Никому его не сообщайте.")


def verify_code(db: Session, *, phone: str, code: str, secret: str, now: datetime, max_attempts: int = 5) -> int:
    """Accept the code (its id is returned) or raise CodeError; every wrong try is counted, whatever the outcome."""
    code = (code or "").strip().replace(" ", "")
    row = db.scalars(
        sa.select(SmsCode)
        .where(SmsCode.phone == phone, SmsCode.consumed_at.is_(None))
        .order_by(SmsCode.id.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if row is None:
        raise CodeError("Код не запрошен или уже использован. Запросите новый код.")
    if row.expires_at <= now:
        raise CodeError("Срок действия кода истёк (5 минут). Запросите новый код.")
    if row.attempts >= max_attempts:
        raise CodeError("Слишком много неверных попыток. Запросите новый код.")
    # A malformed code is hashed too, so every answer takes the same path and time.
    given = _hash_code(secret, phone, code if code.isdigit() and len(code) == 6 else "-")
    if not hmac.compare_digest(row.code_hash, given):
        row.attempts += 1
        left = max_attempts - row.attempts
        db.commit()
        if left <= 0:
            raise CodeError("Слишком много неверных попыток. Запросите новый код.")
        raise CodeError(f"Неверный код. Осталось попыток: {left}.")
    row.consumed_at = now
    db.commit()
    return row.id


# How long after the SMS code a newcomer may still register their company.
REGISTRATION_WINDOW = timedelta(minutes=30)


def claim_registration(db: Session, *, code_id: int, phone: str, now: datetime) -> bool:
    """Spend the verified code on one registration; False if it was spent already or is too old. Does not commit,
    so the claim and the new company are one transaction."""
    if not isinstance(code_id, int) or not 0 < code_id < 2**31:
        return False
    claimed = db.execute(
        sa.update(SmsCode)
        .where(
            SmsCode.id == code_id,
            SmsCode.phone == phone,
            SmsCode.consumed_at.is_not(None),
            SmsCode.consumed_at > now - REGISTRATION_WINDOW,
            SmsCode.registered_at.is_(None),
        )
        .values(registered_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return claimed == 1


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(db: Session, *, user: User, now: datetime) -> str:
    """A server-side record of one signed-in browser; the returned token goes into its cookie. Commits."""
    token = secrets.token_urlsafe(32)
    db.add(UserSession(user_id=user.id, token_hash=_token_hash(token), created_at=now))
    db.commit()
    return token


def load_session_user(db: Session, *, user_id: int, token: str, now: datetime, max_age: timedelta) -> User | None:
    """The person of a live session: the token is theirs, not ended and not older than a cookie may live."""
    if not token or not isinstance(token, str) or len(token) > 100:
        return None
    params = {"user_id": user_id, "token_hash": _token_hash(token), "since": now - max_age}
    return db.scalars(_session_user_stmt(), params).first()


@functools.cache
def _session_user_stmt() -> sa.Select[tuple[User]]:
    # Every signed-in request asks this: the statement is built once, only its parameters change.
    return (
        sa.select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(
            User.id == sa.bindparam("user_id"),
            UserSession.token_hash == sa.bindparam("token_hash"),
            UserSession.ended_at.is_(None),
            UserSession.created_at > sa.bindparam("since", type_=UserSession.created_at.type),
        )
    )


def end_session(db: Session, *, token: str | None, now: datetime) -> None:
    """Sign-out: this browser's session stops working, a copy of its cookie included. Commits."""
    if token and isinstance(token, str):
        db.execute(
            sa.update(UserSession)
            .where(UserSession.token_hash == _token_hash(token), UserSession.ended_at.is_(None))
            .values(ended_at=now)
            .execution_options(synchronize_session=False)
        )
        db.commit()


def end_all_sessions(db: Session, *, user: User, now: datetime) -> int:
    """«Выйти на всех устройствах»: every session of the person ends. Commits; returns how many ended."""
    ended = db.execute(
        sa.update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
        .values(ended_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    record_audit(db, actor=user, account=None, action="user.sessions_ended", after={"sessions": ended})
    db.commit()
    return ended


def get_user_by_phone(db: Session, phone: str) -> User | None:
    return db.scalars(sa.select(User).where(User.phone == phone)).first()


@dataclass
class Registration:
    user: User
    account: Account


def register_owner(
    db: Session, *, phone: str, name: str, company: str, email: str | None, now: datetime
) -> Registration:
    """A new person becomes the owner of a new account on the free plan."""
    user = get_user_by_phone(db, phone)
    if user is None:
        user = User(phone=phone, name=name, email=email or None, created_at=now)
        db.add(user)
    else:
        # The person typed these themselves, after the SMS code: their own profile, whatever a company once wrote.
        user.name = name
        if email:
            user.email = email
    account = Account(name=company, created_at=now)
    db.add(account)
    db.flush()
    db.add(
        Membership(
            account_id=account.id,
            user_id=user.id,
            role=Role.OWNER.value,
            status=MembershipStatus.ACTIVE.value,
            source=Source.PORTAL.value,
            name=name,
            email=email or None,
            seen_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    record_audit(
        db,
        actor=user,
        account=account,
        action="account.registered",
        after={"account": company, "owner": phone},
    )
    db.commit()
    return Registration(user=user, account=account)


def list_memberships(db: Session, user: User) -> list[Membership]:
    """The active memberships of a person, oldest account first (asked once per page: header and access alike)."""
    return list(
        memo(
            db,
            ("memberships", user.id),
            lambda: list(db.scalars(_memberships_stmt(), {"user_id": user.id})),
        )
    )


@functools.cache
def _memberships_stmt() -> sa.Select[tuple[Membership]]:
    return (
        sa.select(Membership)
        .where(Membership.user_id == sa.bindparam("user_id"), Membership.status == MembershipStatus.ACTIVE.value)
        .order_by(Membership.account_id)
    )


def mark_seen(db: Session, membership: Membership, now: datetime) -> None:
    """The person opened a company someone else added them to: it is no longer flagged as new. Commits."""
    if membership.seen_at is None:
        membership.seen_at = now
        db.commit()


def update_profile(db: Session, *, user: User, name: str, email: str | None) -> None:
    """The person's own name and e-mail; no company's record of them changes. Commits."""
    before = {"name": user.name, "email": user.email}
    user.name = name
    user.email = email or None
    record_audit(db, actor=user, account=None, action="user.profile_changed", before=before, after={"name": name})
    db.commit()


def get_membership(db: Session, user: User, account_id: int) -> Membership | None:
    return db.scalars(
        sa.select(Membership).where(
            Membership.user_id == user.id,
            Membership.account_id == account_id,
            Membership.status == MembershipStatus.ACTIVE.value,
        )
    ).first()


def make_staff(db: Session, *, phone: str, name: str | None = None) -> User:
    user = get_user_by_phone(db, phone)
    if user is None:
        user = User(phone=phone, name=name or "Сотрудник поддержки")
        db.add(user)
    before = user.is_staff
    user.is_staff = True
    db.flush()
    record_audit(
        db,
        actor=None,
        account=None,
        action="staff.granted",
        before={"is_staff": before},
        after={"phone": phone},
    )
    db.commit()
    return user
