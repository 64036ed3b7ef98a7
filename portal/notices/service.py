"""Reminders and lifecycle notices: what is due for whom now, each letter sent once (its key is unique).

Plain functions with no Flask request in them: the periodic task and `flask notices sweep` call `sweep`.
Events: the paid period or trial ends in 14, 3 or 1 days (with the renewal's price from the checkout's own offer
and a link to renew), it has ended (with the grace, if any), a payment arrived, an unpaid invoice expires within a
day; and (lifecycle.py) a card or СБП payment declined, over the seat or storage limit, a scheduled change that took
effect. Letters go to the address the company gave for the person (DESIGN: never one another company wrote); a person
may take the reminders and the failed payments by SMS instead, to the phone they sign in with.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.orm import Session

from portal.accounts.models import Account, Membership, MembershipStatus, Role
from portal.accounts.sms import SmsBackend, SmsError
from portal.billing.catalog import PERIODS
from portal.billing.custom_plans import get_plan_for_account
from portal.billing.models import Order, OrderStatus, PeriodKind, PeriodStatus, SubscriptionPeriod, plan_title_for_code
from portal.billing.subscriptions import PurchaseError, _insert_ignoring_conflict
from portal.billing.tick import has_successor
from portal.money import format_rub
from portal.notices.models import Notice, NoticeChannel, NoticeOptOut
from portal.payments import autopay, autopay_letters
from portal.payments.models import Receipt
from portal.payments.offer import get_offer
from portal.support.email import EmailBackend, EmailError, build_message
from portal.timeutil import format_date_ru, format_datetime, msk_date

log = logging.getLogger(__name__)

# Topics a person can switch off one by one (the notifications page and the unsubscribe link speak of these).
TOPIC_RENEWAL = "renewal"
TOPIC_PAYMENTS = "payments"
TOPIC_INVOICES = "invoices"
TOPIC_AUTOPAY = "autopay"
TOPIC_FAILED = "failed"
TOPIC_LIMITS = "limits"
TOPIC_CHANGES = "changes"
TOPICS: dict[str, str] = {
    TOPIC_RENEWAL: "Напоминания об окончании оплаченного или пробного периода",
    TOPIC_FAILED: "Платёж картой или по СБП не прошёл",
    TOPIC_PAYMENTS: "Поступившие платежи",
    TOPIC_INVOICES: "Счета, срок оплаты которых истекает",
    TOPIC_AUTOPAY: "Автоплатёж: предупреждение о списании, его результат, отключение",
    TOPIC_LIMITS: "Превышение тарифа: пользователи или хранилище",
    TOPIC_CHANGES: "Запланированная смена тарифа вступила в силу",
}
# Who gets a topic: the owner always; the accountant also what concerns money and documents.
TOPIC_ROLES: dict[str, tuple[str, ...]] = {
    TOPIC_RENEWAL: (Role.OWNER.value,),
    TOPIC_FAILED: (Role.OWNER.value,),
    TOPIC_PAYMENTS: (Role.OWNER.value, Role.ACCOUNTANT.value),
    TOPIC_INVOICES: (Role.OWNER.value, Role.ACCOUNTANT.value),
    TOPIC_AUTOPAY: (Role.OWNER.value,),
    TOPIC_LIMITS: (Role.OWNER.value,),
    TOPIC_CHANGES: (Role.OWNER.value,),
}
# Topics a person may take by SMS instead of e-mail: what needs acting on before a deadline.
CHANNEL_EMAIL = "email"
CHANNEL_SMS = "sms"
SMS_TOPICS = (TOPIC_RENEWAL, TOPIC_FAILED)
REMIND_DAYS = (14, 3, 1)  # days before the first day without the paid plan
ENDED_NOTICE_DAYS = 3  # an end the sweep learns of later than this is old news, not worth a letter
PAYMENT_NOTICE_DAYS = 2  # likewise for a payment
INVOICE_WARNING = timedelta(days=1)  # an unpaid invoice is mentioned once, within its last day
UNSUBSCRIBE_SALT = "portal.notices.unsubscribe"


@dataclass(frozen=True)
class Letter:
    """One event's letter for the people of one account who get its topic."""

    account_id: int
    topic: str
    event_key: str  # «<event>:<object id>»; the person's id is appended
    subject: str
    body: str  # the plain text; the unsubscribe paragraph is added per person
    sms: str | None = None  # the short text for whoever takes this topic by SMS (default: the subject and a link)


# --- unsubscribe tokens -----------------------------------------------------------------------------------


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=UNSUBSCRIBE_SALT)


def unsubscribe_token(secret_key: str, *, account_id: int, user_id: int, topic: str) -> str:
    """A signed, non-expiring token: an old letter's link must still work (and it can only switch letters off)."""
    return _serializer(secret_key).dumps({"a": account_id, "u": user_id, "t": topic})


@dataclass(frozen=True)
class Unsubscribe:
    account_id: int
    user_id: int
    topic: str


def read_unsubscribe_token(secret_key: str, token: str) -> Unsubscribe | None:
    try:
        data = _serializer(secret_key).loads(token)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("t") not in TOPICS:
        return None
    account_id, user_id = data.get("a"), data.get("u")
    if not isinstance(account_id, int) or not isinstance(user_id, int):
        return None
    return Unsubscribe(account_id, user_id, data["t"])


# --- choices ----------------------------------------------------------------------------------------------


def list_topics_for_role(role: str) -> list[str]:
    return [topic for topic, roles in TOPIC_ROLES.items() if role in roles]


def get_choices(db: Session, account_id: int, user_id: int) -> dict[str, bool]:
    """topic → whether the person gets it (every topic of the app, whether their role receives it or not)."""
    off = set(
        db.scalars(
            sa.select(NoticeOptOut.topic).where(NoticeOptOut.account_id == account_id, NoticeOptOut.user_id == user_id)
        )
    )
    return {topic: topic not in off for topic in TOPICS}


def set_choices(db: Session, account_id: int, user_id: int, wanted: dict[str, bool], now: datetime) -> None:
    """Save what the person wants; topics not named are left as they were. The caller commits."""
    current = get_choices(db, account_id, user_id)
    for topic, on in wanted.items():
        if topic not in TOPICS or current[topic] == on:
            continue
        if on:
            db.execute(
                sa.delete(NoticeOptOut).where(
                    NoticeOptOut.account_id == account_id, NoticeOptOut.user_id == user_id, NoticeOptOut.topic == topic
                )
            )
        else:
            db.add(NoticeOptOut(account_id=account_id, user_id=user_id, topic=topic, created_at=now))
    db.flush()


def unsubscribe(db: Session, request: Unsubscribe, now: datetime) -> None:
    set_choices(db, request.account_id, request.user_id, {request.topic: False}, now)


def get_channels(db: Session, account_id: int, user_id: int) -> dict[str, str]:
    """topic → "email" or "sms", for the topics that may go by SMS."""
    rows = db.execute(
        sa.select(NoticeChannel.topic, NoticeChannel.channel).where(
            NoticeChannel.account_id == account_id, NoticeChannel.user_id == user_id
        )
    ).all()
    chosen = {topic: channel for topic, channel in rows}
    return {topic: chosen.get(topic, CHANNEL_EMAIL) for topic in SMS_TOPICS}


def set_channels(db: Session, account_id: int, user_id: int, wanted: dict[str, str], now: datetime) -> None:
    """Save how the person wants each SMS-able topic; anything else is ignored. The caller commits."""
    current = get_channels(db, account_id, user_id)
    for topic, channel in wanted.items():
        if topic not in SMS_TOPICS or channel not in (CHANNEL_EMAIL, CHANNEL_SMS) or current[topic] == channel:
            continue
        db.execute(
            sa.delete(NoticeChannel).where(
                NoticeChannel.account_id == account_id, NoticeChannel.user_id == user_id, NoticeChannel.topic == topic
            )
        )
        if channel == CHANNEL_SMS:
            db.add(NoticeChannel(account_id=account_id, user_id=user_id, topic=topic, channel=channel, created_at=now))
    db.flush()


@dataclass(frozen=True)
class SettingsPage:
    """What the notifications page shows one person: their role's topics, current choices and the recent letters."""

    topics: list[str]
    choices: dict[str, bool]
    channels: dict[str, str]
    sent: list[Notice]


def settings_page(db: Session, membership: Membership) -> SettingsPage:
    account_id, user_id = membership.account_id, membership.user_id
    return SettingsPage(
        topics=list_topics_for_role(membership.role),
        choices=get_choices(db, account_id, user_id),
        channels=get_channels(db, account_id, user_id),
        sent=list_sent(db, account_id, user_id),
    )


def save_settings(db: Session, membership: Membership, data: dict[str, object], now: datetime) -> None:
    """Save the page's answers (field name → value: one per topic, `<topic>_channel` per SMS-able one) and commit.

    A channel not sent at all (an older page) leaves that topic's way as it was."""
    topics = list_topics_for_role(membership.role)
    wanted = {topic: bool(data.get(topic)) for topic in topics}
    set_choices(db, membership.account_id, membership.user_id, wanted, now)
    how = {t: data.get(f"{t}_channel") for t in topics if t in SMS_TOPICS}
    set_channels(db, membership.account_id, membership.user_id, {t: str(c) for t, c in how.items() if c}, now)
    db.commit()


# --- what is due ------------------------------------------------------------------------------------------


def _unfollowed_periods(db: Session, *conditions: Any) -> list[SubscriptionPeriod]:
    """Active periods meeting `conditions` (by id) that nothing follows yet: what a renewal letter is about."""
    periods = db.scalars(
        sa.select(SubscriptionPeriod)
        .where(SubscriptionPeriod.status == PeriodStatus.ACTIVE, *conditions)
        .order_by(SubscriptionPeriod.id)
    ).all()
    return [period for period in periods if not has_successor(db, period)]


def _renewal_offer_text(db: Session, period: SubscriptionPeriod, now: datetime, base_url: str) -> str:
    plan = get_plan_for_account(db, period.account_id, period.plan_code)
    months = period.months if period.months in PERIODS else 12
    if plan is None:
        return f"Чтобы продолжить работу на платном тарифе, выберите тариф в личном кабинете: {base_url}/plans\n"
    link = f"{base_url}/checkout?{urlencode({'plan': plan.code, 'months': months})}"
    try:
        offer = get_offer(db, period.account_id, plan, months, now)
    except PurchaseError:
        return f"Продлить тариф «{plan.title}»: {link}\n"
    lines = [f"Тариф «{plan.title}»: {format_rub(offer.amount)} — {offer.covers}."]
    if offer.from_balance:
        lines.append(
            f"С баланса компании будет зачтено {format_rub(offer.from_balance)}, к оплате {format_rub(offer.due)}."
        )
    lines.append(f"Продлить в один клик: {link}")
    return "\n".join(lines) + "\n"


def _renew_link(period: SubscriptionPeriod, base_url: str) -> str:
    """The one-click renewal link of an SMS (the letter's own text prices it)."""
    months = period.months if period.months in PERIODS else 12
    return f"{base_url}/checkout?{urlencode({'plan': period.plan_code, 'months': months})}"


def _ending_letters(db: Session, now: datetime, base_url: str) -> Iterator[Letter]:
    today = msk_date(now)
    periods = _unfollowed_periods(
        db,
        SubscriptionPeriod.starts_on <= today,
        SubscriptionPeriod.ends_on > today,
        SubscriptionPeriod.ends_on <= today + timedelta(days=max(REMIND_DAYS)),
    )
    for period in periods:
        days_left = (period.ends_on - today).days
        # The nearest mark reached: a sweep that missed a day still sends the one that matters now, not an old one.
        mark = min(d for d in REMIND_DAYS if days_left <= d)
        trial = period.kind == PeriodKind.TRIAL
        what = "Пробный период" if trial else "Оплаченный период"
        title = plan_title_for_code(period.plan_code)
        last = format_date_ru(period.last_day)
        subject = f"{what} тарифа «{title}» заканчивается {last}"
        body = (
            f"{what} тарифа «{title}» заканчивается {last} включительно "
            f"(осталось дней: {days_left}).\n"
            "Без продления аккаунт перейдёт на бесплатный тариф: до 5 пользователей и 2 ГБ хранилища.\n\n"
            + _renewal_offer_text(db, period, now, base_url)
        )
        sms = (
            f"{what} тарифа «{title}» заканчивается {period.last_day:%d.%m}. Продлить: {_renew_link(period, base_url)}"
        )
        yield Letter(period.account_id, TOPIC_RENEWAL, f"ends-{mark}:{period.id}", subject, body, sms)


def _ended_letters(db: Session, now: datetime, base_url: str) -> Iterator[Letter]:
    today = msk_date(now)
    periods = _unfollowed_periods(
        db,
        SubscriptionPeriod.ended_at.is_not(None),  # the tick has decided what follows (grace or free)
        SubscriptionPeriod.replaced_on.is_(None),
        SubscriptionPeriod.ends_on <= today,
        SubscriptionPeriod.ends_on > today - timedelta(days=ENDED_NOTICE_DAYS),
    )
    for period in periods:
        trial = period.kind == PeriodKind.TRIAL
        what = "Пробный период" if trial else "Оплаченный период"
        title = plan_title_for_code(period.plan_code)
        last = format_date_ru(period.last_day)
        if period.grace_ends_on is not None and period.grace_ends_on > today:
            grace_last = format_date_ru(period.grace_ends_on - timedelta(days=1))
            subject = f"Оплаченный период закончился: тариф «{title}» сохраняется до {grace_last}"
            first = (
                f"Оплаченный период тарифа «{title}» закончился {last}; тариф сохраняется до {grace_last} "
                f"включительно, {'автоплатёж повторяется' if autopay.grace_reason(db, period) else 'оплатите счёт'}. "
                "После этого аккаунт перейдёт на бесплатный тариф.\n\n"
            )
        else:
            subject = f"{what} тарифа «{title}» закончился"
            first = f"{what} тарифа «{title}» закончился {last}. Сейчас действует бесплатный тариф.\n\n"
        yield Letter(
            period.account_id,
            TOPIC_RENEWAL,
            f"ended:{period.id}",
            subject,
            first + _renewal_offer_text(db, period, now, base_url),
            f"{subject}. Продлить: {_renew_link(period, base_url)}",
        )


def _payment_letters(db: Session, now: datetime, base_url: str) -> Iterator[Letter]:
    receipts = db.scalars(
        sa.select(Receipt)
        .where(Receipt.created_at > now - timedelta(days=PAYMENT_NOTICE_DAYS), Receipt.created_at <= now)
        .order_by(Receipt.id)
    ).all()
    for receipt in receipts:
        body = (
            f"Получен платёж {format_rub(receipt.amount)} от {format_date_ru(receipt.received_on)}: "
            f"{receipt.reference}.\nСпасибо! Платежи и баланс компании: {base_url}/payments\n"
        )
        yield Letter(
            receipt.account_id,
            TOPIC_PAYMENTS,
            f"payment:{receipt.id}",
            f"Получен платёж {format_rub(receipt.amount)}",
            body,
        )


def _invoice_letters(db: Session, now: datetime, base_url: str) -> Iterator[Letter]:
    orders = db.scalars(
        sa.select(Order)
        .where(
            Order.status == OrderStatus.PENDING,
            Order.payer_type == "invoice",
            Order.expires_at > now,
            Order.expires_at <= now + INVOICE_WARNING,
        )
        .order_by(Order.id)
    ).all()
    for order in orders:
        assert order.expires_at is not None
        until = format_datetime(order.expires_at)
        body = (
            f"Счёт по заказу № {order.id} на {format_rub(order.amount)} (тариф «{order.plan_title}», "
            f"с {format_date_ru(order.starts_on)} по {format_date_ru(order.last_day)}) не оплачен и действует "
            f"до {until} (время московское). После этого он будет аннулирован, и понадобится новый счёт.\n"
            f"Оплатить картой или оформить новый счёт: {base_url}/\n"
        )
        yield Letter(
            order.account_id,
            TOPIC_INVOICES,
            f"invoice-expiring:{order.id}",
            f"Срок оплаты счёта по заказу № {order.id} истекает",
            body,
        )


def _autopay_letters(db: Session, now: datetime, base_url: str) -> Iterator[Letter]:
    for letter in autopay_letters.letters(db, now, base_url):
        yield Letter(letter.account_id, TOPIC_AUTOPAY, letter.event_key, letter.subject, letter.body)


def _scheduled_opened_letters(db: Session, now: datetime, base_url: str) -> Iterator[Letter]:
    """A smaller plan scheduled unpaid whose payment the tick opened: the owner (and, for an invoice, the
    accountant) is told once what to pay and by when."""
    today = msk_date(now)
    orders = db.scalars(
        sa.select(Order)
        .where(
            Order.status == OrderStatus.PENDING,
            Order.opens_on.is_not(None),
            Order.opens_on > today - timedelta(days=ENDED_NOTICE_DAYS),
            Order.opens_on <= today,
        )
        .order_by(Order.id)
    ).all()
    for order in orders:
        how = (
            f"Счёт выставлен — скачать его и оплатить по QR-коду: {base_url}/documents\n"
            if order.payer_type == "invoice"
            else f"Оплатить картой: {base_url}/\n"
        )
        body = (
            f"С {format_date_ru(order.starts_on)} запланирован переход на тариф «{order.plan_title}» "
            f"(по {format_date_ru(order.last_day)}). Пора оплатить его: {format_rub(order.amount)} "
            f"по заказу № {order.id}. Без оплаты к началу периода тариф не сменится, и после окончания "
            "оплаченного периода аккаунт перейдёт на бесплатный тариф.\n" + how
        )
        yield Letter(
            order.account_id,
            TOPIC_INVOICES if order.payer_type == "invoice" else TOPIC_RENEWAL,
            f"scheduled-opened:{order.id}",
            f"Оплата перехода на тариф «{order.plan_title}» с {format_date_ru(order.starts_on)}",
            body,
        )


def due_letters(db: Session, now: datetime, base_url: str) -> list[Letter]:
    from portal.notices import lifecycle  # the lifecycle events build on this module's Letter

    return [
        *_autopay_letters(db, now, base_url),
        *_ending_letters(db, now, base_url),
        *_ended_letters(db, now, base_url),
        *_payment_letters(db, now, base_url),
        *_invoice_letters(db, now, base_url),
        *_scheduled_opened_letters(db, now, base_url),
        *lifecycle.due_letters(db, now, base_url),
    ]


# --- sending ----------------------------------------------------------------------------------------------


def _body_for(letter: Letter, membership: Membership, *, base_url: str, secret_key: str, company: str) -> str:
    token = unsubscribe_token(secret_key, account_id=letter.account_id, user_id=membership.user_id, topic=letter.topic)
    greeting = f"Здравствуйте{', ' + membership.name if membership.name else ''}!\n\n"
    return (
        greeting
        + f"Компания: {company}.\n"
        + letter.body
        + "\n—\n"
        + f"Вы получили это письмо как {membership.role_title.lower()} в компании {company} "
        + f"(тема: {TOPICS[letter.topic].lower()}).\n"
        + f"Отписаться от этой темы: {base_url}/notifications/unsubscribe/{token}\n"
        + f"Настроить уведомления: {base_url}/notifications\n"
    )


def _deliveries(db: Session, letter: Letter, *, sms: bool) -> list[tuple[Membership, str, str]]:
    """(membership, channel, address) for everyone who gets this letter: by SMS (to the sign-in phone) where the
    person chose it for the topic and SMS can be sent, else by e-mail where the company gave an address."""
    opted_out = sa.select(NoticeOptOut.user_id).where(
        NoticeOptOut.account_id == letter.account_id, NoticeOptOut.topic == letter.topic
    )
    by_sms = set()
    if sms and letter.topic in SMS_TOPICS:
        by_sms = set(
            db.scalars(
                sa.select(NoticeChannel.user_id).where(
                    NoticeChannel.account_id == letter.account_id,
                    NoticeChannel.topic == letter.topic,
                    NoticeChannel.channel == CHANNEL_SMS,
                )
            )
        )
    members = db.scalars(
        sa.select(Membership)
        .where(
            Membership.account_id == letter.account_id,
            Membership.status == MembershipStatus.ACTIVE.value,
            Membership.role.in_(TOPIC_ROLES[letter.topic]),
            Membership.user_id.not_in(opted_out),
        )
        .order_by(Membership.id)
    ).unique()
    out = []
    for m in members:
        if m.user_id in by_sms and m.user.phone:
            out.append((m, CHANNEL_SMS, m.user.phone))
        elif m.email:
            out.append((m, CHANNEL_EMAIL, m.email))
    return out


def _recipients(db: Session, letter: Letter) -> list[Membership]:
    """Who gets a letter by e-mail alone (for callers that send no SMS)."""
    return [membership for membership, _channel, _address in _deliveries(db, letter, sms=False)]


def _sms_text(letter: Letter, base_url: str, company: str) -> str:
    # Plain spaces: an SMS gateway may count or show a no-break space as something else.
    text = f"{letter.sms or letter.subject + '. ' + base_url + '/'} ({company})"
    return text.replace("\xa0", " ")


def sweep(
    db: Session,
    now: datetime,
    *,
    backend: EmailBackend,
    sender: str,
    base_url: str,
    secret_key: str,
    sms_backend: SmsBackend | None = None,
) -> list[str]:
    """Send what is due and not yet sent; returns one line per letter sent.

    Each letter: its notice row is inserted (ON CONFLICT DO NOTHING), the e-mail sent, then committed. A sweep on
    another worker meanwhile waits on the same key and then does nothing; a failed send rolls its row back, so the
    next sweep tries again.
    """
    base_url = base_url.rstrip("/")
    done: list[str] = []
    letters = due_letters(db, now, base_url)
    db.commit()  # the reads above hold no locks worth keeping while the letters go out
    for letter in letters:
        account = db.get(Account, letter.account_id)
        company = account.name if account is not None else f"№ {letter.account_id}"
        for membership, channel, address in _deliveries(db, letter, sms=sms_backend is not None):
            key = f"{letter.event_key}:{membership.user_id}"
            inserted = _insert_ignoring_conflict(
                db,
                Notice.__table__,
                {
                    "account_id": letter.account_id,
                    "user_id": membership.user_id,
                    "topic": letter.topic,
                    "key": key,
                    "email": address,
                    "channel": channel,
                    "subject": letter.subject[:300],
                    "sent_at": now,
                },
                "key",
            )
            if not inserted:
                db.rollback()
                continue
            if channel == CHANNEL_SMS:
                assert sms_backend is not None
                try:
                    sms_backend.send(address, _sms_text(letter, base_url, company))
                except SmsError as exc:
                    db.rollback()  # the next sweep tries again
                    log.warning("notice %s by SMS to %s not sent: %s", key, address, exc)
                    done.append(f"Не отправлено SMS «{letter.subject}» на {address}: {exc}")
                    continue
                db.commit()
                done.append(f"SMS «{letter.subject}» → {address}")
                continue
            body = _body_for(letter, membership, base_url=base_url, secret_key=secret_key, company=company)
            message = build_message(sender=sender, to=membership.email, subject=letter.subject, body=body, now=now)
            try:
                backend.send(message)
            except EmailError as exc:
                db.rollback()
                log.warning("notice %s to %s not sent: %s", key, membership.email, exc)
                done.append(f"Не отправлено «{letter.subject}» на {membership.email}: {exc}")
                continue
            db.commit()
            done.append(f"«{letter.subject}» → {membership.email}")
    return done


def list_sent(db: Session, account_id: int, user_id: int, limit: int = 20) -> list[Notice]:
    return list(
        db.scalars(
            sa.select(Notice)
            .where(Notice.account_id == account_id, Notice.user_id == user_id)
            .order_by(Notice.id.desc())
            .limit(limit)
        )
    )
