"""The checkout's payment choices, listed by the app's wiring (payments and documents provide the handlers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from portal.billing.models import (
    Order,
    SubscriptionPeriod,
)
from portal.billing.orders import PAYER_TYPES

# --- registries (payments and documents plug in here) -----------------------------------------------------

CheckoutHandler = Callable[[Session, Order, Any], str]
# `precheck(db, account_id) -> message | None`: why this payer type cannot start now, asked before any order exists.
CheckoutPrecheck = Callable[[Session, int], str | None]
TickHook = Callable[[Session, datetime], list[str]]
GraceHook = Callable[[Session, SubscriptionPeriod], "str | None"]


@dataclass(frozen=True)
class CheckoutOption:
    payer_type: str  # the checkout's choice ("card", "sbp", "invoice")
    title: str
    handler: CheckoutHandler
    precheck: CheckoutPrecheck | None = None
    # The order's payer type when it differs from the choice: an СБП order is a card order (paid through the
    # provider, the same expiry and return page), only its payment asks for a QR code.
    pays_as: str | None = None

    @property
    def order_payer_type(self) -> str:
        return self.pays_as or self.payer_type


# The checkout lists its choices in this order; a choice not here comes last.
CHECKOUT_ORDER = ("card", "sbp", "invoice")


_CHECKOUT: dict[str, CheckoutOption] = {}
_TICK_HOOKS: dict[str, TickHook] = {}
_GRACE_HOOKS: dict[str, GraceHook] = {}


def register_checkout_handler(
    payer_type: str,
    title: str,
    handler: CheckoutHandler,
    precheck: CheckoutPrecheck | None = None,
    *,
    pays_as: str | None = None,
) -> None:
    """`handler(db, order, actor) -> url` starts the payment of a pending order (payments: card, documents: invoice);
    `precheck` refuses before the order is created, so a refused checkout leaves nothing behind."""
    if (pays_as or payer_type) not in PAYER_TYPES:
        raise ValueError(f"unknown payer type {pays_as or payer_type!r}; expected one of {PAYER_TYPES}")
    _CHECKOUT[payer_type] = CheckoutOption(payer_type, title, handler, precheck, pays_as)


def list_checkout_options(payer_types: tuple[str, ...] = PAYER_TYPES) -> list[CheckoutOption]:
    """Registered handlers in a stable order (card first), limited to the given (order) payer types."""
    rank = {t: i for i, t in enumerate(CHECKOUT_ORDER)}
    options = [o for o in _CHECKOUT.values() if o.order_payer_type in payer_types]
    return sorted(options, key=lambda o: rank.get(o.payer_type, len(rank)))


def get_checkout_option(payer_type: str) -> CheckoutOption | None:
    return _CHECKOUT.get(payer_type)


def register_tick_hook(fn: TickHook) -> None:
    """`fn(db, now) -> [what it did]` runs at every `billing tick` after billing's own work."""
    _TICK_HOOKS[f"{fn.__module__}.{fn.__qualname__}"] = fn


def register_grace_hook(fn: GraceHook) -> None:
    """`fn(db, period) -> reason | None`: another reason than an open invoice to keep an ended period's plan in grace
    (payments: autopayment retries still running)."""
    _GRACE_HOOKS[f"{fn.__module__}.{fn.__qualname__}"] = fn


def _hooked_grace_reason(db: Session, period: SubscriptionPeriod) -> str | None:
    for fn in list(_GRACE_HOOKS.values()):
        reason = fn(db, period)
        if reason:
            return reason
    return None
