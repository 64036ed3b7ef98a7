"""The free trial month, once per account."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from portal.accounts.models import User
from portal.audit import record_audit
from portal.billing.catalog import TRIAL_MONTHS
from portal.billing.custom_plans import get_plan_for_account
from portal.billing.models import PeriodKind
from portal.billing.pricing import add_months
from portal.billing.settlement import _new_period
from portal.billing.subscriptions import PeriodInfo, TrialError, _lock_subscription, _state_dict, get_subscription_state
from portal.timeutil import format_date

# --- trial ------------------------------------------------------------------------------------------------


def start_trial(db: Session, *, actor: User | None, account_id: int, plan_code: str, now: datetime) -> PeriodInfo:
    """One free month of any plan, once per account; support switches it on at the owner's request."""
    plan = get_plan_for_account(db, account_id, plan_code)
    if plan is None:
        raise TrialError(f"Тариф «{plan_code}» не найден.")
    if plan.is_free:
        raise TrialError("Бесплатный тариф не нужно пробовать: он действует всегда, когда нет оплаты.")
    subscription = _lock_subscription(db, account_id, now)
    if subscription.trial_used_at is not None:
        raise TrialError(
            f"Пробный период уже был включён {format_date(subscription.trial_used_at)}: он предоставляется один раз."
        )
    state = get_subscription_state(db, account_id, now)
    if state.is_paid:
        raise TrialError("Во время оплаченного периода пробный период не включается.")
    today = state.today
    row = _new_period(
        db,
        account_id=account_id,
        kind=PeriodKind.TRIAL,
        plan=plan,
        starts_on=today,
        ends_on=add_months(today, TRIAL_MONTHS),
        term_start=today,
        months=TRIAL_MONTHS,
        order_id=None,
        now=now,
    )
    subscription.trial_used_at = now
    subscription.updated_at = now
    db.flush()
    record_audit(
        db,
        actor=actor,
        account=account_id,
        action="billing.trial_started",
        before=_state_dict(state),
        after=_state_dict(get_subscription_state(db, account_id, now)),
    )
    return PeriodInfo.from_row(row)
