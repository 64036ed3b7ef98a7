"""Sign-in by SMS code, registration of a new company, memberships and staff."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus, Role, SmsCode, Source, User
from portal.accounts.sms import SmsBackend
from portal.audit import record_audit


class CodeError(ValueError):
    """A sign-in code was not accepted; the message is for the person."""


def _hash_code(secret: str, phone: str, code: str) -> str:
    return hmac.new(secret.encode(), f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()


def send_code(db: Session, *, phone: str, sms: SmsBackend, secret: str, now: datetime, ttl_seconds: int = 300) -> None:
    """Issue a fresh 6-digit code; earlier unused codes of that phone stop working."""
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


def verify_code(db: Session, *, phone: str, code: str, secret: str, now: datetime, max_attempts: int = 5) -> None:
    """Accept the code or raise CodeError; every wrong try is counted, whatever the outcome."""
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
    """The active memberships of a person, oldest account first."""
    return list(
        db.scalars(
            sa.select(Membership)
            .where(Membership.user_id == user.id, Membership.status == MembershipStatus.ACTIVE.value)
            .order_by(Membership.account_id)
        )
    )


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
