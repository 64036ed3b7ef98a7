"""The account's home page `/`: the plan, how much of it is used, and the one next step that fits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import Flask, current_app, redirect, render_template, url_for
from flask_login import current_user

from portal.accounts.access import current_membership, public
from portal.billing.catalog import PLANS, Plan
from portal.billing.display import format_storage, users_upto_ru
from portal.billing.orders import list_orders
from portal.billing.pricing import FitResult
from portal.billing.subscriptions import (
    PurchaseError,
    SubscriptionState,
    get_subscription_state,
    get_usage,
    list_owners,
    suggest_plan,
)
from portal.db import get_db, utcnow
from portal.money import format_rub
from portal.nav import register_nav
from portal.payments import ledger
from portal.payments.autopay import get_autopay
from portal.payments.offer import Offer, get_offer
from portal.seats.limits import SUGGESTION_MONTHS
from portal.timeutil import format_date, format_date_ru, msk_date

register_nav("index", "Главная", ("owner", "accountant", "member"), order=10)

# Renewal is suggested this many days before the paid stretch ends; usage above this share is "nearly full".
RENEW_WITHIN_DAYS = 30
NEARLY_FULL = 0.8


@dataclass(frozen=True)
class Meter:
    """A usage bar: `<meter>` needs no inline style, and its low/high marks colour it."""

    label: str
    used: int
    limit: int
    used_text: str
    limit_text: str

    @property
    def over(self) -> bool:
        return self.used > self.limit

    @property
    def max(self) -> int:
        # Over the limit the bar is full and past "high", so the browser paints it as bad.
        return max(self.used, self.limit, 1)

    @property
    def low(self) -> float:
        return self.limit * NEARLY_FULL

    @property
    def high(self) -> int:
        return self.limit

    @property
    def percent(self) -> int:
        return round(100 * self.used / self.limit) if self.limit else 0


@dataclass(frozen=True)
class NextStep:
    tone: str  # danger | warning | info | success
    title: str
    text: str
    action: str | None = None
    url: str | None = None
    secondary: str | None = None
    secondary_url: str | None = None


def grace_notice(state: SubscriptionState, retry_on: date | None = None) -> str:
    """What the owner must know in a grace period: when it ended, until when the plan is kept, what to do — pay the
    invoice, or, while autopayment retries a declined charge (`retry_on`: its next attempt), wait or pay another way."""
    assert state.period_last_day is not None and state.grace_until is not None
    ended = format_date_ru(state.period_last_day)
    todo = (
        f"автоплатёж не прошёл, следующая попытка {format_date_ru(retry_on)} — или оплатите другим способом"
        if retry_on is not None
        else "оплатите счёт"
    )
    return (
        f"Оплаченный период закончился {ended}; тариф «{state.plan.title}» сохраняется до "
        f"{format_date_ru(state.grace_until)} включительно, {todo}. Без оплаты аккаунт перейдёт на "
        "бесплатный тариф до 5 пользователей."
    )


def _next_step(
    state: SubscriptionState,
    seats: Meter,
    storage: Meter,
    fit: FitResult,
    support_url: str | None,
    offer: Offer | None = None,
    retry_on: date | None = None,
) -> NextStep:
    plan = state.plan
    if seats.over or storage.over:
        what = []
        if seats.over:
            what.append(f"активных пользователей {seats.used}, а тариф допускает {seats.limit}")
        if storage.over:
            what.append(f"занято {storage.used_text} при квоте {storage.limit_text}")
        problem = "Сейчас " + " и ".join(what) + "."
        if state.is_grace:
            problem = grace_notice(state, retry_on) + " " + problem
        if fit.contact_support or fit.plan is None:
            return NextStep(
                "danger",
                "Тариф превышен",
                problem + " Для такой команды нужен индивидуальный тариф — свяжитесь с поддержкой.",
                "Связаться с поддержкой",
                support_url,
            )
        if offer is None:
            return NextStep(
                "danger",
                "Тариф превышен",
                f"{problem} Подойдёт тариф «{fit.plan.title}» ({format_storage(fit.plan.storage_bytes)}). "
                "Или отключите лишних пользователей.",
                "Выбрать подходящий тариф",
                url_for("billing.plans", suggested=fit.plan.code),
            )
        # The checkout's own figure: for a paid company that is the co-termed extra payment, not a catalog price.
        return NextStep(
            "danger",
            "Тариф превышен",
            f"{problem} Подойдёт тариф «{fit.plan.title}» ({format_storage(fit.plan.storage_bytes)}): "
            f"к оплате {format_rub(offer.due)} ({offer.covers}). Или отключите лишних пользователей.",
            f"Оплатить «{fit.plan.title}»",
            url_for("billing.checkout", plan=fit.plan.code, months=offer.purchase.months),
            "Другие тарифы",
            url_for("billing.plans", suggested=fit.plan.code),
        )
    if state.is_grace:
        return NextStep(
            "danger",
            f"Тариф сохраняется до {format_date_ru(state.grace_until)}",
            grace_notice(state, retry_on),
            "Оплатить картой",
            url_for("billing.checkout", plan=plan.code, months=state.months or 12),
            "Счета на оплату",
            "#pending-title",
        )
    if state.is_trial and state.trial_until is not None:
        return NextStep(
            "warning",
            f"Пробный период до {format_date_ru(state.trial_until)}",
            f"Оплатите тариф «{plan.title}», чтобы сохранить его после пробного периода. "
            "Без оплаты аккаунт перейдёт на бесплатный тариф до 5 пользователей.",
            "Оплатить тариф",
            url_for("billing.checkout", plan=plan.code, months=12),
            "Другие тарифы",
            url_for("billing.plans"),
        )
    if state.is_paid and state.days_left is not None and state.days_left <= RENEW_WITHIN_DAYS:
        last = state.paid_until
        assert last is not None
        return NextStep(
            "warning",
            f"Оплаченный период заканчивается {format_date_ru(last)}",
            f"Продлите тариф «{plan.title}»: новый период начнётся сразу после текущего, "
            "оплаченные дни не пропадут. Без продления аккаунт перейдёт на бесплатный тариф.",
            "Продлить",
            url_for("billing.checkout", plan=plan.code, months=state.months or 12),
            "Сменить тариф",
            url_for("billing.plans"),
        )
    if seats.used >= seats.limit * NEARLY_FULL and seats.limit > 0:
        bigger = _next_bigger(state.plan, seats.used)
        free = max(seats.limit - seats.used, 0)
        text = f"Свободно мест: {free} из {seats.limit}."
        if bigger is not None:
            text += f" Когда команда вырастет, подойдёт тариф «{bigger.title}» — {format_rub(bigger.monthly_price)} в месяц."
            return NextStep(
                "info",
                "Места почти закончились",
                text,
                "Посмотреть тарифы",
                url_for("billing.plans", suggested=bigger.code),
            )
        return NextStep("info", "Места почти закончились", text, "Связаться с поддержкой", support_url)
    if state.is_free:
        return NextStep(
            "info",
            "Бесплатный тариф",
            f"{users_upto_ru(plan.seats).capitalize()} и {format_storage(plan.storage_bytes)} хранилища. "
            "Когда команда вырастет, выберите платный тариф — оплата от 6 месяцев, скидка до 10 %.",
            "Посмотреть тарифы",
            url_for("billing.plans"),
        )
    assert state.paid_until is not None
    return NextStep(
        "success",
        "Всё в порядке",
        f"Тариф оплачен по {format_date_ru(state.paid_until)} включительно, мест и хранилища достаточно.",
        "Продлить заранее",
        url_for("billing.checkout", plan=plan.code, months=state.months or 12),
    )


def _next_bigger(plan: Plan, users: int) -> Plan | None:
    return next((p for p in PLANS if p.seats > max(plan.seats, users)), None)


def _support_url() -> str | None:
    if "support.request_new" in current_app.view_functions:
        return url_for("support.request_new")
    return f"mailto:{current_app.config['SUPPORT_EMAIL']}"


@public
def index() -> Any:
    if not current_user.is_authenticated:
        return redirect(url_for("accounts.login"))
    membership = current_membership()
    if membership is None:
        if current_user.is_staff and "support.queue" in current_app.view_functions:
            return redirect(url_for("support.queue"))
        return render_template("dashboard_empty.html")
    db = get_db()
    account = membership.account
    now = utcnow()
    state = get_subscription_state(db, account.id, now)
    usage = get_usage(db, account)
    plan = state.plan
    seats = Meter("Пользователи", usage.active_users, plan.seats, str(usage.active_users), str(plan.seats))
    storage = Meter(
        "Хранилище",
        usage.storage_used_bytes,
        plan.storage_bytes,
        format_storage(usage.storage_used_bytes),
        format_storage(plan.storage_bytes),
    )
    fit = suggest_plan(db, account.id, usage)
    support_url = _support_url()
    offer = None
    if (seats.over or storage.over) and fit.plan is not None and not fit.contact_support:
        try:
            offer = get_offer(db, account.id, fit.plan, SUGGESTION_MONTHS, now)
        except PurchaseError:
            offer = None
    is_manager = membership.role in ("owner", "accountant")
    # Autopayment renews a paid plan: on the free plan there is nothing to say (and nothing to ask the database).
    autopay = get_autopay(db, account.id) if is_manager and (state.is_paid or state.is_grace) else None
    retry_on = autopay.renewal.next_attempt_on if state.is_grace and autopay and autopay.renewal else None
    step = _next_step(state, seats, storage, fit, support_url, offer, retry_on)
    open_orders = list_orders(db, account.id, statuses=("pending", "scheduled"), limit=20) if is_manager else []
    return render_template(
        "dashboard.html",
        account=account,
        state=state,
        plan=plan,
        seats=seats,
        storage=storage,
        step=step,
        is_manager=is_manager,
        is_owner=membership.role == "owner",
        # Only a member is shown whom to ask; an owner or accountant is the one asked.
        owners=list_owners(db, account.id) if not is_manager else [],
        # Unpaid invoices wait for a bank transfer; an abandoned card attempt is just noise and expires in a day.
        # A scheduled smaller plan whose payment the tick opened waits here too, by card as well as by invoice.
        pending_orders=[
            o for o in open_orders if o.status == "pending" and (o.payer_type == "invoice" or o.opens_on is not None)
        ],
        # A smaller plan scheduled unpaid: when it begins and when it is paid (the same query as the pending ones).
        scheduled_orders=sorted((o for o in open_orders if o.status == "scheduled"), key=lambda o: (o.starts_on, o.id)),
        format_date=format_date,
        balance=ledger.account_balance(db, account.id) if is_manager else 0,
        attention=ledger.list_attention(db, account.id) if is_manager else [],
        autopay=autopay,
    )


def valid_through(moment: datetime) -> str:
    """An invoice's deadline as the invoice prints it: «7 декабря 2026 г.», the last Moscow day it may be paid
    (orders keep the instant after it, midnight of the next day, which read as «08.12.2026 00:00»)."""
    return format_date_ru(msk_date(moment - timedelta(microseconds=1)))


def init_app(app: Flask) -> None:
    app.add_url_rule("/", "index", index)
    app.add_template_filter(valid_through, "valid_through")
