"""Interim re-exports of billing's services under their old name; new code imports the module that does the work.

Issue #17 split this module into subscriptions, custom_plans, purchases, orders, settlement, trial, checkout and
tick; callers still reading `service.<name>` keep working until their imports are moved.
"""

from __future__ import annotations

from portal.billing.catalog import get_plan
from portal.billing.checkout import (
    CHECKOUT_ORDER,
    CheckoutHandler,
    CheckoutOption,
    CheckoutPrecheck,
    get_checkout_option,
    list_checkout_options,
    no_options_text,
    options_for_role,
    set_checkout_options,
)
from portal.billing.custom_plans import (
    create_custom_plan,
    deactivate_custom_plan,
    get_plan_for_account,
    list_custom_plans,
    list_plans_for_account,
)
from portal.billing.orders import (
    CARD_ORDER_TTL,
    IDEMPOTENCY_KEY_RE,
    INVOICE_ORDER_TTL,
    PAYER_TYPES,
    cancel_order,
    cancel_scheduled_period,
    change_plans,
    create_order,
    get_order,
    get_scheduled_period,
    list_order_topups,
    list_orders,
    list_scheduled_orders,
    payment_opens_on,
)
from portal.billing.pricing import quote
from portal.billing.purchases import Purchase, Topup, price_for_state, price_purchase
from portal.billing.settlement import (
    RightsCut,
    _cancel_stale_upgrades,
    _problem,
    apply_paid_order,
    end_rights_early,
    order_problem,
    rights_cut,
)
from portal.billing.subscriptions import (
    DEFAULT_GRACE_DAYS,
    PeriodInfo,
    PurchaseError,
    SubscriptionState,
    TrialError,
    Usage,
    _insert_ignoring_conflict,
    count_active_users,
    get_effective_plan,
    get_subscription_state,
    get_usage,
    list_owners,
    suggest_plan,
)
from portal.billing.tick import open_scheduled_orders, tick
from portal.billing.trial import start_trial

__all__ = [
    "get_plan",
    "quote",
    "DEFAULT_GRACE_DAYS",
    "PurchaseError",
    "TrialError",
    "PeriodInfo",
    "SubscriptionState",
    "get_subscription_state",
    "get_effective_plan",
    "count_active_users",
    "Usage",
    "get_usage",
    "suggest_plan",
    "list_owners",
    "_insert_ignoring_conflict",
    "list_custom_plans",
    "get_plan_for_account",
    "list_plans_for_account",
    "create_custom_plan",
    "deactivate_custom_plan",
    "Topup",
    "Purchase",
    "price_purchase",
    "price_for_state",
    "PAYER_TYPES",
    "CARD_ORDER_TTL",
    "INVOICE_ORDER_TTL",
    "IDEMPOTENCY_KEY_RE",
    "list_order_topups",
    "create_order",
    "payment_opens_on",
    "list_scheduled_orders",
    "get_order",
    "list_orders",
    "cancel_order",
    "get_scheduled_period",
    "cancel_scheduled_period",
    "change_plans",
    "_problem",
    "order_problem",
    "apply_paid_order",
    "RightsCut",
    "rights_cut",
    "end_rights_early",
    "_cancel_stale_upgrades",
    "start_trial",
    "CheckoutHandler",
    "CheckoutPrecheck",
    "CheckoutOption",
    "CHECKOUT_ORDER",
    "list_checkout_options",
    "get_checkout_option",
    "no_options_text",
    "options_for_role",
    "set_checkout_options",
    "open_scheduled_orders",
    "tick",
]
