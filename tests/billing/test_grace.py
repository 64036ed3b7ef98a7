"""Grace, not a cliff: a paid period that ends while its renewal invoice is unpaid keeps the plan for GRACE_DAYS."""

from __future__ import annotations

from datetime import date

from portal.billing.settlement import apply_paid_order
from portal.billing.subscriptions import get_effective_plan, get_subscription_state
from portal.billing.tick import tick
from portal.seats.limits import get_limits
from tests.billing.conftest import audit_actions, page_text
from tests.billing.terms import msk

OWNER = "+79163330000"


def bought_with_renewal_invoice(db, make_account, buy, order_for, *, members=0, invoice_on=None):
    """users-12 paid for 10.03.2026–09.09.2026, and an invoice for its renewal issued and unpaid."""
    account = make_account(owner_phone=OWNER, members=members)
    buy(account, "users-12", 6, msk(2026, 3, 10, 12))
    invoice = order_for(account, "users-12", 6, invoice_on or msk(2026, 9, 5, 10), payer_type="invoice")
    assert invoice.starts_on == date(2026, 9, 10)
    return account, invoice


def plan_on(db, account, now) -> tuple[str, str]:
    state = get_subscription_state(db, account.id, now)
    return state.status, get_effective_plan(db, account.id, now).code


def test_an_unpaid_renewal_invoice_keeps_the_plan_through_the_last_grace_day(db, make_account, buy, order_for):
    account, invoice = bought_with_renewal_invoice(db, make_account, buy, order_for)

    # The last paid day: nothing to do yet.
    assert tick(db, msk(2026, 9, 9, 23, 59)) == []
    assert plan_on(db, account, msk(2026, 9, 9, 23, 59)) == ("paid", "users-12")

    # The first grace day: the plan is kept, and the tick says until when.
    done = tick(db, msk(2026, 9, 10, 0, 1))
    assert len(done) == 1
    assert f"счёт по заказу № {invoice.id} не оплачен: тариф сохраняется по 16.09.2026" in done[0]
    state = get_subscription_state(db, account.id, msk(2026, 9, 10, 0, 1))
    assert state.is_grace and not state.is_paid
    assert (state.plan.code, state.period_last_day, state.grace_until) == (
        "users-12",
        date(2026, 9, 9),
        date(2026, 9, 16),
    )
    assert get_effective_plan(db, account.id, msk(2026, 9, 10, 0, 1)).code == "users-12"

    # The last grace day: still kept, even though the invoice itself has expired meanwhile (grace, once granted,
    # runs its days: the owner may pay by a new invoice or a card).
    assert tick(db, msk(2026, 9, 16, 23, 59)) == [
        f"ООО «Тест» (№ {account.id}): заказ № {invoice.id} не оплачен в срок и закрыт"
    ]
    assert plan_on(db, account, msk(2026, 9, 16, 23, 59)) == ("grace", "users-12")

    # The first day after: the fall back to free, recorded once.
    done = tick(db, msk(2026, 9, 17, 0, 0))
    assert any("льготный период тарифа «12 пользователей» закончился 16.09.2026" in line for line in done)
    assert plan_on(db, account, msk(2026, 9, 17, 0, 0)) == ("free", "users-5")
    assert tick(db, msk(2026, 9, 17, 0, 1)) == []
    actions = audit_actions(db, account.id)
    assert actions.count("billing.grace_started") == 1 and actions.count("billing.expired") == 1
    assert actions[-1] == "billing.expired"


def test_without_an_invoice_the_plan_falls_back_to_free_when_the_period_ends(db, make_account, buy, order_for):
    account = make_account(owner_phone=OWNER)
    buy(account, "users-12", 6, msk(2026, 3, 10, 12))
    order_for(account, "users-12", 6, msk(2026, 9, 9, 20), payer_type="card")  # an abandoned card attempt
    tick(db, msk(2026, 9, 10, 0, 1))
    assert plan_on(db, account, msk(2026, 9, 10, 0, 1)) == ("free", "users-5")
    assert "billing.grace_started" not in audit_actions(db, account.id)


def test_an_invoice_issued_after_the_end_gives_no_grace(db, make_account, buy, order_for):
    account = make_account(owner_phone=OWNER)
    buy(account, "users-12", 6, msk(2026, 3, 10, 12))
    tick(db, msk(2026, 9, 10, 0, 1))
    order_for(account, "users-12", 6, msk(2026, 9, 10, 9), payer_type="invoice")
    tick(db, msk(2026, 9, 10, 9, 1))
    assert plan_on(db, account, msk(2026, 9, 10, 9, 1)) == ("free", "users-5")


def test_grace_days_are_a_setting(db, make_account, buy, order_for):
    account, _ = bought_with_renewal_invoice(db, make_account, buy, order_for)
    tick(db, msk(2026, 9, 10, 0, 1), grace_days=3)
    assert plan_on(db, account, msk(2026, 9, 12, 23)) == ("grace", "users-12")
    tick(db, msk(2026, 9, 13, 0, 1), grace_days=3)
    assert plan_on(db, account, msk(2026, 9, 13, 0, 1)) == ("free", "users-5")


def test_grace_days_zero_means_no_grace(db, make_account, buy, order_for):
    account, _ = bought_with_renewal_invoice(db, make_account, buy, order_for)
    tick(db, msk(2026, 9, 10, 0, 1), grace_days=0)
    assert plan_on(db, account, msk(2026, 9, 10, 0, 1)) == ("free", "users-5")


def test_paying_the_invoice_during_grace_renews_and_the_grace_end_records_nothing(db, make_account, buy, order_for):
    account, invoice = bought_with_renewal_invoice(db, make_account, buy, order_for)
    tick(db, msk(2026, 9, 10, 0, 1))
    assert apply_paid_order(db, invoice.id, now=msk(2026, 9, 12, 11), reference="pp-17")
    db.commit()
    state = get_subscription_state(db, account.id, msk(2026, 9, 12, 11))
    assert state.is_paid and state.plan.code == "users-12" and state.period_start == date(2026, 9, 12)
    assert tick(db, msk(2026, 9, 17, 0, 1)) == []
    assert plan_on(db, account, msk(2026, 9, 17, 0, 1)) == ("paid", "users-12")
    assert "billing.expired" not in audit_actions(db, account.id)


def test_over_limit_logic_uses_the_kept_plan_until_the_grace_ends(db, make_account, buy, order_for):
    account, _ = bought_with_renewal_invoice(db, make_account, buy, order_for, members=8)  # 9 active
    tick(db, msk(2026, 9, 10, 0, 1))
    limits = get_limits(db, account.id, msk(2026, 9, 16, 12))
    assert (limits.seats_limit, limits.over_limit) == (12, False)
    tick(db, msk(2026, 9, 17, 0, 1))
    limits = get_limits(db, account.id, msk(2026, 9, 17, 0, 1))
    assert (limits.seats_limit, limits.over_limit) == (5, True)


def test_the_dashboard_says_until_when_the_plan_is_kept(client, db, make_account, buy, order_for, auth, freeze):
    account, _ = bought_with_renewal_invoice(db, make_account, buy, order_for)
    tick(db, msk(2026, 9, 10, 0, 1))
    freeze(msk(2026, 9, 11, 10))
    auth.login(OWNER)
    text = page_text(client.get("/"))
    assert "Тариф сохраняется до 16 сентября 2026 г." in text
    assert (
        "Оплаченный период закончился 9 сентября 2026 г.; тариф «12 пользователей» сохраняется до "
        "16 сентября 2026 г. включительно, оплатите счёт." in text
    )
    assert "Не продлён" in text
