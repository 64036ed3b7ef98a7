"""The sign-in steps behind the views: asking for a code (limits, budget, gateway) and checking it."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import phonenumbers
from limits import parse as parse_limit
from sqlalchemy.orm import Session

from portal.accounts import service
from portal.accounts.models import User
from portal.accounts.sms import SmsError, SmsRecipientRefused, make_sms_backend
from portal.db import utcnow
from portal.extensions import limiter
from portal.support.email import EmailError, build_message, get_email_backend
from portal.wording import minutes_ru

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodeRequest:
    """What came of asking for a code: sent (no error), or the message for the phone field and the HTTP status."""

    error: str | None = None
    status: int = 200
    reformat: bool = False  # over a sending limit the form shows the number as people read it


def country_refused(phone: str, config: Any) -> bool:
    """Codes go only to the countries in SMS_ALLOWED_COUNTRIES: an international SMS costs the vendor many times a
    Russian one, and pumping them was the attack."""
    allowed = {c.strip().upper() for c in str(config["SMS_ALLOWED_COUNTRIES"]).split(",") if c.strip()}
    return phonenumbers.region_code_for_number(phonenumbers.parse(phone, None)) not in allowed


def take_sending_slot(phone: str, remote_addr: str | None, config: Any) -> int | None:
    """Count one code against the per-phone and per-address sending limits, atomically in the limiter's storage
    (Redis INCR in production), right before it is sent: None if it may go, else the minutes to wait.

    Counting here rather than in the route's decorator is what makes both promises hold together: only a code that
    is about to go out counts (a mistyped number costs nothing), and two servers asked at the same moment cannot
    both see a free slot — the decorator's check-then-deduct let a fourth code through under load."""
    if not limiter.enabled:
        return None  # RATELIMIT_ENABLED=False (the access tests sign in many times)
    strategy = limiter.limiter
    checks = [
        (parse_limit(config["SMS_SEND_LIMIT_PER_PHONE"]), ("sms-code", "phone", phone)),
        (parse_limit(config["SMS_SEND_LIMIT_PER_IP"]), ("sms-code", "ip", remote_addr or "-")),
    ]
    for item, keys in checks:
        if not strategy.hit(item, *keys):
            reset_at = strategy.get_window_stats(item, *keys).reset_time
            return max(1, math.ceil((reset_at - time.time()) / 60))
    return None


def alert_sms_budget(db: Session, config: Any) -> None:
    """Tell staff once an hour that sign-in codes stopped: people cannot sign in, and it may be an attack."""
    budget = int(config["SMS_BUDGET_PER_HOUR"])
    if not service.claim_sms_budget_alert(db, now=utcnow(), budget=budget):
        return
    log.warning("SMS budget of %s codes per hour reached; codes are refused", budget)
    try:
        message = build_message(
            sender=str(config["EMAIL_FROM"]),
            to=str(config["SUPPORT_EMAIL"]),
            subject=f"SMS-коды не отправляются: достигнут предел {budget} в час",
            body=(
                f"За последний час портал отправил {budget} SMS-кодов для входа — это предел SMS_BUDGET_PER_HOUR.\n"
                "Пока он не освободится, новые коды не отправляются и войти по SMS нельзя.\n\n"
                "Проверьте, не перебор ли это номеров (журнал действий, логи SMS-шлюза); если это настоящий "
                "наплыв людей, увеличьте SMS_BUDGET_PER_HOUR.\n"
            ),
        )
        get_email_backend().send(message)
    except EmailError as exc:
        # The audit record is kept: staff see it in the journal even if the mail did not go.
        log.warning("SMS budget alert: could not e-mail support: %s", exc)


def request_code(db: Session, *, phone: str, remote_addr: str | None, config: Any) -> CodeRequest:
    """Send a sign-in code to `phone` unless a rule refuses it: the country, the sending limits, the hourly budget
    or the gateway."""
    if country_refused(phone, config):
        return CodeRequest("На номера этой страны мы не отправляем SMS. Обратитесь в поддержку.", 400)
    wait = take_sending_slot(phone, remote_addr, config)
    if wait is not None:
        # Over a sending limit the person gets the form back, number kept, with the wait — not a bare 429 page.
        error = f"Слишком много запросов кода. Новый код можно запросить через {wait} мин."
        return CodeRequest(error, 429, reformat=True)
    try:
        service.send_code(
            db,
            phone=phone,
            sms=make_sms_backend(config),
            secret=config["SECRET_KEY"],
            now=utcnow(),
            ttl_seconds=config["SMS_CODE_TTL_SECONDS"],
            budget_per_hour=int(config["SMS_BUDGET_PER_HOUR"]),
        )
    except service.SmsBudgetReached as exc:
        alert_sms_budget(db, config)
        return CodeRequest(
            f"Сервис временно не отправляет коды, попробуйте через {minutes_ru(exc.minutes)} "
            f"или обратитесь в поддержку: {config['SUPPORT_PHONE']}.",
            503,
        )
    except SmsRecipientRefused as exc:
        # The number itself is refused: waiting a minute will not help, checking the digits may.
        return CodeRequest(
            f"SMS-шлюз не доставляет сообщения на этот номер: «{exc}». Проверьте номер или укажите другой.", 400
        )
    except SmsError as exc:
        return CodeRequest(f"Не удалось отправить SMS: {exc}. Попробуйте через минуту.", 503)
    return CodeRequest()


@dataclass(frozen=True)
class CodeCheck:
    """A code checked: the error for the code field, or who signed in (None: a newcomer who is to register)."""

    error: str | None = None
    code_id: int | None = None
    user: User | None = None
    staff_only: bool = False  # staff without a company of their own land on the support queue


def check_code(db: Session, *, phone: str, code: str, config: Any) -> CodeCheck:
    """Check the code typed for `phone`; a known person with a company (or staff) is marked as signed in now."""
    try:
        code_id = service.verify_code(
            db,
            phone=phone,
            code=code,
            secret=config["SECRET_KEY"],
            now=utcnow(),
            max_attempts=config["SMS_CODE_MAX_ATTEMPTS"],
        )
    except service.CodeError as exc:
        return CodeCheck(error=str(exc))
    user = service.get_user_by_phone(db, phone)
    memberships = service.list_memberships(db, user) if user is not None else []
    if user is None or not (memberships or user.is_staff):
        return CodeCheck(code_id=code_id)
    user.last_login_at = utcnow()
    db.commit()
    return CodeCheck(code_id=code_id, user=user, staff_only=user.is_staff and not memberships)


def register(
    db: Session, *, phone: str, code_id: Any, name: str, company: str, email: str
) -> service.Registration | None:
    """Register the company the checked code allows; None if that code already registered one (nothing changes)."""
    # The cookie is the person's to copy; the server decides that one SMS code registers one company.
    if not service.claim_registration(db, code_id=code_id, phone=phone, now=utcnow()):
        db.rollback()
        return None
    return service.register_owner(
        db, phone=phone, name=name.strip(), company=company.strip(), email=email.strip() or None, now=utcnow()
    )
