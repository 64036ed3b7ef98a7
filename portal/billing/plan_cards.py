"""The plans page's cards: what each plan offers this account for the chosen months, and the button it gets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from portal.billing.catalog import MAX_SELF_SERVICE_SEATS, PERIODS, Plan
from portal.billing.checkout import PAYMENT_METHODS_BY_ROLE
from portal.billing.custom_plans import list_plans_for_account
from portal.billing.pricing import Quote, fits, quote
from portal.billing.purchases import Purchase, price_for_state
from portal.billing.subscriptions import (
    PurchaseError,
    SubscriptionState,
    Usage,
    get_subscription_state,
    get_usage,
    list_owners,
)
from portal.money import format_rub
from portal.payments.ledger import account_balance
from portal.payments.offer import Offer


@dataclass
class PlanCard:
    plan: Plan
    quote: Quote
    is_current: bool
    too_small: bool
    suggested: bool
    action: str | None  # button label, None when there is nothing to buy
    checkout_url: str | None
    note: str | None
    purchase: Purchase | None


def plans_page(
    db: Session,
    membership: Any,
    *,
    months: int,
    suggested_code: str,
    checkout_url: Callable[[Plan], str],
    now: Any,
) -> dict[str, Any]:
    """What the plans page shows a member (`membership`) or a visitor (None): the cards for `months`, the account's
    state and usage, and for a member who does not pay, the owners to ask."""
    account = membership.account if membership else None
    role = membership.role if membership else None
    state = get_subscription_state(db, account.id, now) if account is not None else None
    usage = get_usage(db, account) if account is not None else None
    cards = plan_cards(
        db,
        account.id if account else None,
        months=months,
        state=state,
        usage=usage,
        balance=account_balance(db, account.id) if account is not None else 0,
        suggested_code=suggested_code,
        can_buy=role in PAYMENT_METHODS_BY_ROLE or membership is None,  # visitors are sent to sign in at checkout
        checkout_url=checkout_url,
    )
    return {
        "cards": cards,
        "months": months,
        "periods": PERIODS,
        "state": state,
        "usage": usage,
        "account": account,
        "role": role,
        "max_seats": MAX_SELF_SERVICE_SEATS,
        "owners": list_owners(db, account.id) if account is not None and role == "member" else [],
    }


def plan_cards(
    db: Session,
    account_id: int | None,
    *,
    months: int,
    state: SubscriptionState | None,
    usage: Usage | None,
    balance: int,
    suggested_code: str,
    can_buy: bool,
    checkout_url: Callable[[Plan], str],
) -> list[PlanCard]:
    """One card per plan the account may see; `balance` (kopecks) is what checkout will take from first."""
    cards: list[PlanCard] = []
    for plan in list_plans_for_account(db, account_id):
        is_current = state is not None and state.plan.code == plan.code
        too_small = usage is not None and not fits(plan, usage.active_users, usage.storage_used_bytes)
        purchase = None
        note = None
        action = None
        url = None
        if not plan.is_free and can_buy:
            action = "Выбрать"
            url = checkout_url(plan)
            purchase = _purchase(state, plan, months)
            if purchase is not None:
                if purchase.kind == "renewal":
                    action = "Продлить"
                note = _price_note(purchase, balance)
        suggested = plan.code == suggested_code
        cards.append(PlanCard(plan, quote(plan, months), is_current, too_small, suggested, action, url, note, purchase))
    return cards


def _purchase(state: SubscriptionState | None, plan: Plan, months: int) -> Purchase | None:
    if state is None:
        return None
    try:
        return price_for_state(state, plan, months)
    except PurchaseError:
        return None


def _price_note(purchase: Purchase, balance: int) -> str | None:
    """What checkout will ask for this card, in its words (a co-termed upgrade is no catalog price): payments' offer,
    the balance taken first. None when the card's total says it already."""
    offer = Offer(purchase=purchase, balance=balance)
    if purchase.kind == "new" and not offer.from_balance:
        return None
    return f"К оплате {format_rub(offer.due)} ({offer.covers})"
