"""Autopayment's letters: the warning before a charge, its success, each failed attempt, the switch-off.

The notices sweep sends them under its own topic, each once (the event key is unique per person)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.billing.display import months_ru
from portal.billing.models import plan_title_for_code
from portal.money import format_rub
from portal.payments import ledger
from portal.payments.autopay_models import AutopayConsent, AutopayRenewal, ConsentStatus, RenewalStatus, SavedMethod
from portal.payments.providers.base import reason_text
from portal.timeutil import format_date, format_date_ru, msk_date

EVENT_DAYS = 2  # a letter about an event the sweep learns of later than this is old news


@dataclass(frozen=True)
class AutopayLetter:
    account_id: int
    event_key: str
    subject: str
    body: str


def _cancel_line(base_url: str) -> str:
    return f"Отключить автоплатёж или удалить карту можно одной кнопкой: {base_url}/payments#autopay\n"


def letters(db: Session, now: datetime, base_url: str) -> list[AutopayLetter]:
    today = msk_date(now)
    since = now - timedelta(days=EVENT_DAYS)
    out: list[AutopayLetter] = []
    rows = db.execute(
        sa.select(AutopayRenewal, AutopayConsent)
        .join(AutopayConsent, AutopayConsent.id == AutopayRenewal.consent_id)
        .where(
            sa.or_(
                AutopayRenewal.created_at > since,
                AutopayRenewal.last_attempt_at > since,
                AutopayRenewal.done_at > since,
            )
        )
        .order_by(AutopayRenewal.id)
    ).all()
    for renewal, consent in rows:
        method = db.get(SavedMethod, consent.method_id) if consent.method_id else None
        card = method.title if method is not None else "сохранённая карта"
        title = plan_title_for_code(renewal.plan_code)
        period = months_ru(renewal.months)
        if renewal.status in (RenewalStatus.NOTICED, RenewalStatus.CHARGING) and renewal.charge_on >= today:
            balance = ledger.account_balance(db, renewal.account_id)
            from_balance = min(balance, renewal.amount)
            lines = [
                f"{format_date_ru(renewal.charge_on)} тариф «{title}» будет продлён на {period} — "
                f"с {format_date(renewal.period_ends_on)}. Сумма: {format_rub(renewal.amount)}.",
            ]
            if from_balance:
                lines.append(
                    f"С баланса компании будет зачтено {format_rub(from_balance)}, с карты ({card}) — "
                    f"{format_rub(renewal.amount - from_balance)}."
                )
            else:
                lines.append(f"Сумма будет списана с карты: {card}.")
            out.append(
                AutopayLetter(
                    renewal.account_id,
                    f"autopay-upcoming:{renewal.id}",
                    f"Автоплатёж {format_date(renewal.charge_on)}: {format_rub(renewal.amount)} за тариф «{title}»",
                    "\n".join(lines) + "\n\n" + _cancel_line(base_url),
                )
            )
        if renewal.status == RenewalStatus.SUCCEEDED and renewal.done_at and renewal.done_at > since:
            paid = []
            if renewal.charged:
                paid.append(f"с карты ({card}) списано {format_rub(renewal.charged)}")
            if renewal.from_balance:
                paid.append(f"с баланса зачтено {format_rub(renewal.from_balance)}")
            out.append(
                AutopayLetter(
                    renewal.account_id,
                    f"autopay-paid:{renewal.id}",
                    f"Тариф «{title}» продлён автоплатежом",
                    f"Тариф «{title}» продлён на {period}, с {format_date(renewal.period_ends_on)}: "
                    + ", ".join(paid or ["оплачено"])
                    + f".\nПлатежи и баланс компании: {base_url}/payments\n\n"
                    + _cancel_line(base_url),
                )
            )
        failed = renewal.status in (RenewalStatus.FAILING, RenewalStatus.FAILED)
        if failed and renewal.last_attempt_at and renewal.last_attempt_at > since:
            # Paying another way (another card, an invoice) makes the next attempts charge nothing.
            link = f"{base_url}/checkout?plan={renewal.plan_code}&months={renewal.months}"
            if renewal.next_attempt_on is not None:
                next_line = (
                    f"Следующая попытка — {format_date_ru(renewal.next_attempt_on)}. "
                    f"Чтобы не ждать, оплатите другим способом: {link}\n"
                )
            else:
                next_line = f"Попыток больше не будет. Оплатить другим способом: {link}\n"
            out.append(
                AutopayLetter(
                    renewal.account_id,
                    f"autopay-failed:{renewal.id}:{renewal.attempts}",
                    f"Автоплатёж не прошёл: тариф «{title}»",
                    f"Не удалось списать {format_rub(renewal.amount)} с карты ({card}) за продление тарифа "
                    f"«{title}» на {period}.\nПричина: {reason_text(renewal.last_reason)}\n"
                    + next_line
                    + f"Оплаченный период заканчивается {format_date_ru(renewal.period_ends_on - timedelta(days=1))}"
                    " включительно.\n\n" + _cancel_line(base_url),
                )
            )
    canceled = db.scalars(
        sa.select(AutopayConsent)
        .where(AutopayConsent.status == ConsentStatus.CANCELED, AutopayConsent.canceled_at > since)
        .order_by(AutopayConsent.id)
    ).all()
    for consent in canceled:
        title = plan_title_for_code(consent.plan_code)
        out.append(
            AutopayLetter(
                consent.account_id,
                f"autopay-canceled:{consent.id}",
                "Автоплатёж отключён",
                f"Автоплатёж за тариф «{title}» отключён {format_date(consent.canceled_at or now)}"
                f" ({consent.cancel_reason or 'по просьбе владельца'}). Больше ничего не будет списано.\n"
                f"Продлить тариф можно вручную: {base_url}/checkout?plan={consent.plan_code}&months={consent.months}\n",
            )
        )
    return out
