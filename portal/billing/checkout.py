"""The checkout's payment choices: the list create_app builds (payments and documents provide the handlers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from portal.accounts.models import Role
from portal.billing.models import Order
from portal.billing.orders import PAYMENT_METHODS

CheckoutHandler = Callable[[Session, Order, Any], str]
# `precheck(db, account_id) -> message | None`: why this payment method cannot start now, asked before any order exists.
CheckoutPrecheck = Callable[[Session, int], str | None]


@dataclass(frozen=True)
class CheckoutOption:
    method: str  # the checkout's choice ("card", "sbp", "invoice")
    title: str
    handler: CheckoutHandler
    precheck: CheckoutPrecheck | None = None
    # The order's payment method when it differs from the choice: an СБП order is a card order (paid through the
    # provider, the same expiry and return page), only its payment asks for a QR code.
    pays_as: str | None = None

    def __post_init__(self) -> None:
        if self.order_method not in PAYMENT_METHODS:
            raise ValueError(f"unknown payment method {self.order_method!r}; expected one of {PAYMENT_METHODS}")

    @property
    def order_method(self) -> str:
        return self.pays_as or self.method


# The owner chooses plans; an accountant pays for the company as a legal entity, so only by invoice.
PAYMENT_METHODS_BY_ROLE = {Role.OWNER.value: ("card", "invoice"), Role.ACCOUNTANT.value: ("invoice",)}

# The checkout lists its choices in this order; a choice not here comes last.
CHECKOUT_ORDER = ("card", "sbp", "invoice")


# Filled once by create_app from the list it builds; billing never imports the features that pay.
_CHECKOUT: dict[str, CheckoutOption] = {}


def set_checkout_options(options: Iterable[CheckoutOption]) -> None:
    """The app's payment choices: `handler(db, order, actor) -> url` starts the payment of a pending order
    (payments: card and СБП, documents: invoice); `precheck` refuses before the order is created, so a refused
    checkout leaves nothing behind. A choice given again replaces the earlier one."""
    for option in options:
        _CHECKOUT[option.method] = option


def list_checkout_options(methods: tuple[str, ...] = PAYMENT_METHODS) -> list[CheckoutOption]:
    """The app's choices in a stable order (card first), limited to the given (order) payment methods."""
    rank = {t: i for i, t in enumerate(CHECKOUT_ORDER)}
    options = [o for o in _CHECKOUT.values() if o.order_method in methods]
    return sorted(options, key=lambda o: rank.get(o.method, len(rank)))


def get_checkout_option(method: str) -> CheckoutOption | None:
    return _CHECKOUT.get(method)


def options_for_role(role: str) -> list[CheckoutOption]:
    """The choices this member may pay with (none for a role that does not pay)."""
    return list_checkout_options(PAYMENT_METHODS_BY_ROLE.get(role, ()))


def no_options_text(role: str) -> str:
    if role == Role.ACCOUNTANT.value:
        return (
            "Оплата по счёту для юридических лиц пока недоступна. Оплатить картой может владелец аккаунта, "
            "или обратитесь в поддержку."
        )
    return "Оплата пока недоступна: способы оплаты ещё не подключены. Обратитесь в поддержку."
