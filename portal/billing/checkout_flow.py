"""What a checkout or a scheduled change's form leads to: the rules the billing pages apply, as results to show."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from portal.accounts.models import Role
from portal.billing.catalog import PERIODS, Plan
from portal.billing.checkout import CheckoutOption, get_checkout_option, no_options_text, options_for_role
from portal.billing.custom_plans import get_plan_for_account
from portal.billing.display import allowed_months_ru
from portal.billing.orders import (
    cancel_scheduled_period,
    change_choice,
    create_order,
    payment_opens_on,
    scheduled_canceled_notice,
    scheduled_order_notice,
)
from portal.billing.purchases import Purchase, price_purchase
from portal.billing.subscriptions import PeriodInfo, PurchaseError, get_subscription_state, get_usage
from portal.documents.service import get_requisites
from portal.money import format_rub
from portal.payments.autopay import AUTOPAY_TERMS_VERSION
from portal.payments.autopay import offered_for as autopay_offered
from portal.payments.autopay import terms_text as autopay_terms_text
from portal.payments.ledger import order_allocated
from portal.payments.offer import offer_for_purchase
from portal.timeutil import msk_date

log = logging.getLogger(__name__)


class Refused(Exception):
    """A request refused before anything changes: the page answers `status` with `message` (Russian)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Outcome:
    """Where the person goes next: an optional flash, then `url`, else the checkout of `plan_code` for `months`,
    else the dashboard."""

    notice: str | None = None
    category: str = "success"
    url: str | None = None
    plan_code: str | None = None
    months: int | None = None


def parse_months(raw: str | None) -> int | None:
    """An offered period from a query or form value; None for anything else ("3", "abc", "6.0", missing)."""
    raw = (raw or "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 3:
        return None
    months = int(raw)
    return months if months in PERIODS else None


def months_error(raw: str | None) -> str:
    shown = (raw or "").strip()[:20]
    what = f"Период «{shown}» не предлагается" if shown else "Период оплаты не указан"
    return f"{what}. Можно оплатить {allowed_months_ru()}."


# --- /checkout --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutRequest:
    """What the checkout is asked to sell: the plan, the months, its price now and the choices this member has."""

    plan: Plan
    months: int
    purchase: Purchase
    offer: Any
    options: list[CheckoutOption]


@dataclass(frozen=True)
class Submission:
    """A submitted checkout form's verdict: place the order (`ok`, with the `option` chosen), or show the page again
    with `status` and `problem`; `amount_changed`: the form must show the current amount."""

    ok: bool
    status: int = 200
    problem: str | None = None
    option: CheckoutOption | None = None
    amount_changed: bool = False


def open_checkout(db: Session, account_id: int, role: str, source: Mapping[str, Any], now: Any) -> CheckoutRequest:
    """The plan and months of a link or form (`source`) priced for the account; Refused for an unknown plan, a period
    not offered or a purchase that cannot be made."""
    plan_code = (source.get("plan") or "").strip()
    plan = get_plan_for_account(db, account_id, plan_code) if plan_code else None
    if plan is None:
        shown = plan_code[:64] or "не указан"
        raise Refused(f"Тариф «{shown}» не найден. Выберите тариф на странице «Тарифы».")
    months = parse_months(source.get("months"))
    if months is None:
        raise Refused(months_error(source.get("months")))
    try:
        purchase = price_purchase(db, account_id, plan, months, now, topup_ids=topup_choice(source))
    except PurchaseError as exc:
        raise Refused(str(exc)) from exc
    offer = offer_for_purchase(db, account_id, purchase)
    return CheckoutRequest(plan, months, purchase, offer, options_for_role(role))


def topup_choice(source: Any) -> frozenset[int] | None:
    """Which prepaid later periods an upgrade raises too: the ticked `topup` boxes once the form (or a link) says
    a choice was made (`topups_choice`), else None — every one, as the page offers them ticked."""
    if not source.get("topups_choice"):
        return None
    return frozenset(int(v) for v in source.getlist("topup") if v.isascii() and v.isdigit() and len(v) < 12)


def check_submission(
    db: Session, account_id: int, role: str, req: CheckoutRequest, *, valid: bool, shown_amount: Any, method: Any
) -> Submission:
    """Whether a submitted checkout may place its order: Refused when this member has no way to pay; a form whose
    amount is not today's price is shown again (nothing is charged the person did not see); a choice whose precheck
    refuses is shown again with why, before any order exists."""
    if not req.options:
        raise Refused(no_options_text(role))
    if not valid:
        return Submission(False, 400)
    purchase = req.purchase
    if shown_amount != str(purchase.amount):
        log.warning(
            "checkout amount mismatch: account %s plan %s form %r server %s",
            account_id,
            req.plan.code,
            shown_amount,
            purchase.amount,
        )
        problem = (
            "Сумма к оплате изменилась или форма была изменена. Проверьте заказ ниже "
            f"(к оплате {format_rub(purchase.amount)}) и подтвердите его ещё раз."
        )
        return Submission(False, 400, problem, amount_changed=True)
    option = get_checkout_option(method)
    refusal = option.precheck(db, account_id) if option is not None and option.precheck else None
    if refusal is not None:
        return Submission(False, 409, refusal)
    return Submission(True, option=option)


def place_order(
    db: Session,
    *,
    actor: Any,
    account_id: int,
    req: CheckoutRequest,
    method: Any,
    chosen: CheckoutOption | None,
    license_version: str,
    idempotency_key: Any,
    now: Any,
    defer_days: int | None,
) -> Outcome:
    """The order of a checked checkout, and where its payment starts; Refused when it cannot be paid now."""
    try:
        order = create_order(
            db,
            actor=actor,
            account_id=account_id,
            plan_code=req.plan.code,
            months=req.months,
            payer_type=chosen.order_method if chosen is not None else method,
            license_version=license_version,
            idempotency_key=idempotency_key,
            now=now,
            topup_ids=frozenset(t.period.id for t in req.purchase.topups),
            defer_days=defer_days,
        )
        db.commit()
    except PurchaseError as exc:
        db.rollback()
        raise Refused(str(exc)) from exc
    if order.status == "scheduled" and order.opens_on is not None:
        # Nothing is asked for now: the tick opens the payment when the period comes near.
        return Outcome(scheduled_order_notice(order))
    if order.status == "paid":
        return Outcome("Этот заказ уже оплачен.")
    if order.status != "pending":
        raise Refused("Этот заказ уже закрыт. Откройте страницу оплаты заново, чтобы оформить новый.")
    # The choice made (СБП) when it is a way to pay this order's payment method, else the method's own.
    option = chosen if chosen is not None and chosen.order_method == order.payer_type else None
    option = option or get_checkout_option(order.payer_type)
    if option is None:
        raise Refused("Этот способ оплаты сейчас недоступен. Выберите другой.")
    try:
        target = option.handler(db, order, actor)
        db.commit()
    except Exception:
        db.rollback()
        log.exception("checkout handler %s failed for order %s", order.payer_type, order.id)
        notice = "Не удалось начать оплату. Заказ сохранён — попробуйте ещё раз через минуту."
        return Outcome(notice, "error", plan_code=req.plan.code, months=req.months)
    return Outcome(url=target)


def checkout_page(db: Session, account: Any, role: str, req: CheckoutRequest, now: Any, config: Any) -> dict[str, Any]:
    """What the checkout page shows and offers besides the form: the state, the choices, the dates and terms."""
    options = req.options
    by_card = any(o.method == "card" for o in options)
    return {
        "plan": req.plan,
        "months": req.months,
        "purchase": req.purchase,
        "state": get_subscription_state(db, account.id, now),
        "usage": get_usage(db, account),
        "options": options,
        "no_options_text": no_options_text(role) if not options else None,
        "license_version": config["LICENSE_VERSION"],
        "periods": PERIODS,
        "offer": req.offer,
        # A smaller plan months away is scheduled now and paid when its period comes near.
        "opens_on": payment_opens_on(req.purchase, msk_date(now), config["SCHEDULED_PAYMENT_DAYS"]),
        # A company paying by card may ask for a УПД: offered once its requisites are on file.
        "company": get_requisites(db, account.id) if by_card else None,
        "autopay_terms": _autopay_terms(req.purchase, by_card, role, config),
        "autopay_version": AUTOPAY_TERMS_VERSION,
    }


def _autopay_terms(purchase: Purchase, by_card: bool, role: str, config: Any) -> str | None:
    """The autopayment terms the owner may agree to with a card payment (None: not offered here)."""
    if role != Role.OWNER.value or not by_card or not autopay_offered(purchase):
        return None
    return autopay_terms_text(purchase.plan.code, purchase.months, purchase.quote.total, config)


# --- a scheduled change, cancelled before it starts ---------------------------------------------------------


def cancel_scheduled_change(
    db: Session, *, account_id: int, period: PeriodInfo, actor: Any, now: Any, form: Mapping[str, Any]
) -> Outcome:
    """The owner's confirmed cancel: the period never begins, its money goes to the balance; with «Изменить»
    (`then_plan`, `then_months`) the next stop is the checkout of the chosen plan for the same first day.
    Refused for a bad choice, checked before anything changes, so it cancels nothing."""
    # What was paid, read before the cancel moves it to the balance: the notice says how much went there.
    paid = order_allocated(db, period.order_id) if period.order_id is not None else 0
    then = None
    if "then_plan" in form:
        state = get_subscription_state(db, account_id, now)
        try:
            then_plan = change_choice(db, account_id, state, period, form.get("then_plan"))
        except PurchaseError as exc:
            raise Refused(str(exc)) from exc
        then_months = parse_months(form.get("then_months"))
        if then_months is None:
            raise Refused(months_error(form.get("then_months")))
        then = (then_plan, then_months)
    try:
        cancel_scheduled_period(
            db,
            account_id=account_id,
            period_id=period.id,
            actor=actor,
            reason="Отменён владельцем до начала периода",
            now=now,
        )
        db.commit()
    except PurchaseError as exc:
        db.rollback()
        return Outcome(str(exc), "error")
    notice = scheduled_canceled_notice(period, paid, then[0] if then else None)
    if then is None:
        return Outcome(notice)
    return Outcome(notice, plan_code=then[0].code, months=then[1])
