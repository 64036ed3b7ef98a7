"""The upgrade that also raises a prepaid next period, through the ledger: one invoice and one УПД naming both
periods; cancelling the raised period later gives back both what was paid for it and the part that raised it."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from portal.billing.models import OrderTopup
from portal.billing.orders import cancel_scheduled_period
from portal.billing.subscriptions import get_subscription_state
from portal.db import utcnow
from portal.documents.models import Invoice, Upd
from portal.payments import ledger
from portal.timeutil import msk_date
from tests.documents.factories import payment
from tests.payments.test_ledger import import_, invoice_for, order
from tests.payments.test_scheduled_change import company_with_a_prepaid_next_period

# users-24 → users-50 for 6 months on the period's first day: the whole difference, once for each period.
PART = (4_990 - 1_990) * 6 * 100


def test_one_invoice_and_one_upd_name_each_period_and_cancelling_the_raised_one_returns_both_parts(
    app, db, make_account
):
    account, renewal, _inv = company_with_a_prepaid_next_period(app, db, make_account)
    now = utcnow()
    upgrade = order(db, account, "users-50", 6, now=now)
    assert (upgrade.kind, upgrade.amount) == ("upgrade", 2 * PART)
    inv = invoice_for(app, db, upgrade, now=now)
    first = msk_date(now)
    current_last = renewal.starts_on - timedelta(days=1)
    next_last = renewal.ends_on - timedelta(days=1)
    periods = (
        f"с {first:%d.%m.%Y} по {current_last:%d.%m.%Y} и за оплаченный период "
        f"с {renewal.starts_on:%d.%m.%Y} по {next_last:%d.%m.%Y}"
    )
    assert inv.line_name.endswith(f"доплата за переход на больший тариф {periods}")
    import_(app, db, payment("901", inv.amount, f"Оплата по счёту № {inv.number}", day=first), now=now)
    db.expire_all()
    assert db.get(Invoice, inv.id).status == "paid"
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == inv.id)).one()
    assert upd.amount == 2 * PART
    assert upd.context["lines"][0]["name"].endswith(periods)
    assert upd.context["other_info"] == (
        f"Права предоставлены на период с {first:%d.%m.%Y} по {current_last:%d.%m.%Y} "
        f"и с {renewal.starts_on:%d.%m.%Y} по {next_last:%d.%m.%Y}"
    )
    state = get_subscription_state(db, account.id, now)
    assert state.plan.code == "users-50" and [p.plan.code for p in state.scheduled] == ["users-50"]

    # The owner cancels the raised period before it begins: its own money and the part that raised it return.
    [raised] = state.scheduled
    cancel_scheduled_period(db, account_id=account.id, period_id=raised.id, actor=None, reason="т", now=now)
    db.commit()
    assert ledger.account_balance(db, account.id) == renewal.amount + PART
    assert db.scalars(sa.select(OrderTopup)).one().released_at is not None
    # The УПД named the raised period: staff are asked whether a correction is due.
    assert any("проверьте, нужен ли УКД" in (r.attention or "") for r in ledger.list_attention(db, account.id))
    totals = ledger.account_totals(db, account.id)
    assert totals.received == totals.allocated + totals.balance + totals.refunded
