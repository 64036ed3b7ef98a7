"""The money ledger: every kopeck that arrives is recorded once and is applied, on the balance, or refunded.

A property test runs random sequences of what customers, banks and staff do — orders, cancellations, withdrawn
upgrades, card payments (also for stale orders, and delivered twice), statements with part payments, overpayments,
several invoices in one payment and the same payment order twice in a file, refunds — on SQLite and PostgreSQL, and
after each step checks the invariants. The tests after it name each defect the ledger was built to end.
"""

from __future__ import annotations

import itertools
import json
import os
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from portal.billing.models import Order, OrderTopup, SubscriptionPeriod
from portal.billing.orders import cancel_order, cancel_scheduled_period, create_order, list_order_topups
from portal.billing.settlement import rights_cut
from portal.billing.subscriptions import PurchaseError, get_subscription_state
from portal.billing.tick import tick
from portal.billing.trial import start_trial
from portal.documents import render
from portal.documents.invoices import TooManyOpenInvoices, issue_invoice, record_card_order
from portal.documents.models import Invoice, Ukd, Upd
from portal.payments import attempts, autopay, bank, ledger, refunds, statement_lines
from portal.payments import service as payments
from portal.payments.autopay_models import AutopayRenewal
from portal.payments.models import Allocation, LineStatus, Payment, Receipt, Refund, StatementLine
from portal.payments.providers import get_provider
from portal.payments.providers.sandbox import Card
from portal.payments.statement import build_statement
from portal.timeutil import msk_midnight
from tests.conftest import post
from tests.documents.factories import SELLER_ACCOUNT, give_requisites, payment, statement

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
_keys = itertools.count(1)


@pytest.fixture(autouse=True)
def quick_render(monkeypatch):
    """Money is about sums, not layout: stand-ins for WeasyPrint keep hundreds of documents fast."""
    monkeypatch.setattr(render, "render_invoice_pdf", lambda ctx: f"%PDF-invoice {ctx['number']}".encode())
    monkeypatch.setattr(render, "render_upd_pdf", lambda ctx: f"%PDF-upd {ctx['number']}".encode())
    monkeypatch.setattr(render, "render_ukd_pdf", lambda ctx: f"%PDF-ukd {ctx['number']}".encode())
    monkeypatch.setattr(render, "render_advance_pdf", lambda ctx: f"%PDF-advance {ctx['number']}".encode())


def order(db, account, plan="users-12", months=6, payer_type="invoice", now=NOW) -> Order:
    row = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code=plan,
        months=months,
        payer_type=payer_type,
        license_version="2026-01",
        idempotency_key=f"ledger-{next(_keys):06d}",
        now=now,
    )
    db.commit()
    return row


def invoice_for(app, db, row: Order, now=NOW) -> Invoice | None:
    with app.app_context():
        if ledger.settle_from_balance(db, row, now=now, config=app.config, actor=None):
            db.commit()
            return None
        try:
            inv = issue_invoice(db, row, actor=None, now=now, config=app.config)
        except TooManyOpenInvoices:
            # The account already has its share of unpaid invoices: the order goes, as at checkout.
            db.rollback()
            cancel_order(db, row.id, actor=None, reason="слишком много неоплаченных счетов", now=now)
            db.commit()
            return None
        db.commit()
    return inv


def open_card_page(app, db, row: Order, now=NOW, method=None) -> Payment:
    """Checkout sends the payer to the provider's page, or shows an СБП QR code (`method="sbp"`); either may stay
    open while the order changes."""
    with app.app_context():
        pay, _url = attempts.start_card_payment(
            db, row, None, provider=get_provider(app, "sandbox"), return_url="http://x/", now=now, method=method
        )
    return pay


def pay_on_card_page(app, db, pay: Payment, now=NOW, twice=False, card: str | None = None) -> Payment:
    """The payer presses Pay; the notification (maybe delivered twice) settles it through the ledger."""
    provider = get_provider(app, "sandbox")
    with app.app_context():
        typed = Card(card, 12, 2030) if card else None
        provider.complete(pay.provider_payment_id, method="sbp" if pay.method == "sbp" else "bank_card", card=typed)
        for _ in range(2 if twice else 1):
            payments.process_provider_payment(db, provider, pay.provider_payment_id, now=now, source="webhook")
    db.expire_all()
    return db.get(Payment, pay.id)


def pay_by_card(app, db, row: Order, now=NOW, twice=False) -> Payment:
    return pay_on_card_page(app, db, open_card_page(app, db, row, now), now, twice)


def autopay_received(db) -> int:
    """Money the saved cards brought (autopayment's charges), for the test's own count of what was sent."""
    return int(
        db.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(Receipt.amount), 0))
            .join(Payment, Payment.id == Receipt.payment_id)
            .where(Payment.idempotence_key.like("autopay-%"))
        )
        or 0
    )


def import_(app, db, *docs, now=NOW):
    with app.app_context():
        return bank.import_statement(db, statement(*docs), file_name="s.txt", actor=None, now=now)


# --- the invariants ---------------------------------------------------------------------------------------------


def check_invariants(db, sent: int) -> None:
    db.expire_all()
    total = ledger.Totals(0, 0, 0)
    for (account_id,) in db.execute(sa.select(Receipt.account_id).distinct()):
        t = ledger.account_totals(db, account_id)
        assert t.balance >= 0, f"account {account_id}: negative balance {t}"
        total = ledger.Totals(total.received + t.received, total.allocated + t.allocated, total.refunded + t.refunded)
    # Every receipt: what it applied and refunded never exceeds what it brought.
    for receipt in db.scalars(sa.select(Receipt)):
        assert 0 <= ledger.free_amount(db, receipt.id) <= receipt.amount, receipt.source_key
    # Nothing dropped: what the banks and the provider sent is received, or listed for staff.
    listed = db.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(StatementLine.amount), 0)).where(
            StatementLine.status.in_([LineStatus.UNMATCHED.value, LineStatus.DISMISSED.value])
        )
    )
    assert total.received + listed == sent
    for row in db.scalars(sa.select(Order)):
        applied = ledger.order_allocated(db, row.id)
        periods = db.scalar(
            sa.select(sa.func.count()).select_from(SubscriptionPeriod).where(SubscriptionPeriod.order_id == row.id)
        )
        # A prepaid period an upgrade raised was replaced by one on the bigger plan: the same rights, not twice.
        raised = db.scalar(
            sa.select(sa.func.count())
            .select_from(OrderTopup)
            .join(SubscriptionPeriod, SubscriptionPeriod.id == OrderTopup.period_id)
            .where(SubscriptionPeriod.order_id == row.id, OrderTopup.new_period_id.is_not(None))
        )
        periods -= raised
        assert periods <= 1, f"order {row.id} applied {periods} times"
        if row.status == "paid":
            # Paid in full once; a refund of unused days (staff's decision) gives part of it back, never more.
            paid_in = _sum_allocations(db, row.id, Allocation.amount > 0)
            given_back = -_sum_allocations(db, row.id, Allocation.amount < 0)
            assert paid_in == row.amount and periods == 1 and 0 <= given_back <= row.amount, row
            corrected = db.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(Ukd.amount_before - Ukd.amount_after), 0)).where(
                    Ukd.order_id == row.id
                )
            )
            assert corrected in (0, given_back), f"order {row.id}: УКД lower the cost by {corrected}, {given_back} back"
        elif row.status in ("canceled", "expired"):
            assert applied == 0 and periods == 0, row
        else:
            assert 0 <= applied < row.amount and periods == 0, row
    for inv in db.scalars(sa.select(Invoice)):
        owner = db.get(Order, inv.order_id)
        if inv.status == "issued":
            assert owner.status == "pending", f"invoice {inv.number} payable for a {owner.status} order"
        if inv.upd_due_on is not None:
            # A УПД still due is for rights that will begin: never for a period cancelled before its start.
            assert db.scalar(
                sa.select(sa.func.count())
                .select_from(SubscriptionPeriod)
                .where(SubscriptionPeriod.order_id == owner.id, SubscriptionPeriod.status == "active")
            ), f"invoice {inv.number}: a УПД due for a period that will never begin"
        if inv.status == "paid":
            # A company card payment documents its rights like a transfer: a УПД now, or on the day they begin.
            has_upd = db.scalar(sa.select(sa.func.count()).select_from(Upd).where(Upd.invoice_id == inv.id))
            assert owner.status == "paid" and (has_upd or inv.upd_due_on is not None or _rights_cut(db, owner)), inv
    for upd in db.scalars(sa.select(Upd)):
        inv = db.get(Invoice, upd.invoice_id)
        assert db.get(Order, inv.order_id).status == "paid", f"УПД {upd.number} without granted rights"


def _rights_cut(db, row: Order) -> bool:
    """Staff ended the order's rights before they began: no УПД is ever due for them."""
    return bool(_sum_allocations(db, row.id, Allocation.amount < 0))


def _sum_allocations(db, order_id: int, *where) -> int:
    return int(
        db.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(Allocation.amount), 0)).where(
                Allocation.order_id == order_id, *where
            )
        )
    )


def carry_out(app, db, made, moment) -> None:
    """Staff carry out refunds: a card's through the provider, a transfer's by the accountant."""
    provider = get_provider(app, "sandbox")
    for refund in made:
        with app.app_context():
            if refund.method == "card":
                refunds.refund_through_provider(
                    db,
                    refund.id,
                    provider=provider,
                    customer=payments.Customer(phone="+79160000000"),
                    actor=None,
                    now=moment,
                )
            else:
                refunds.complete_bank_refund(db, refund.id, actor=None, reference="п/п № 1", now=moment)
        db.commit()


# --- the property ---------------------------------------------------------------------------------------------

PLANS = st.sampled_from([("users-12", 6), ("users-24", 6), ("users-12", 9), ("users-50", 12)])
STEP = st.one_of(
    st.tuples(st.just("invoice"), PLANS),
    st.tuples(st.just("card"), PLANS),
    st.tuples(st.just("company_card"), PLANS),
    st.tuples(st.just("sbp"), PLANS),  # a card order paid by СБП: its receipt is «sbp», refunded through the provider
    st.tuples(st.just("upgrade"), st.sampled_from(["users-50", "users-200"])),
    st.tuples(st.just("cancel"), st.integers(0, 9)),
    st.tuples(st.just("cancel_scheduled"), st.booleans()),
    st.tuples(st.just("pay_card"), st.integers(0, 9), st.booleans()),
    st.tuples(
        st.just("bank"),
        st.lists(st.integers(0, 9), min_size=1, max_size=2),
        st.sampled_from(["exact", "short", "over", "no_number"]),
        st.booleans(),
    ),
    # A statement in bulk: the payment among other companies' payment orders (listed for staff, inserted in
    # batches around it), then the same file imported again, which must record nothing.
    st.tuples(
        st.just("bank_bulk"),
        st.lists(st.integers(0, 9), min_size=1, max_size=2),
        st.sampled_from(["exact", "short", "over", "no_number"]),
        st.integers(0, 4),
    ),
    # Several payment orders of the company in one statement (one import, one transaction): the same invoice twice,
    # part of an invoice and then its rest found by the payer's ИНН and amount, others' money in between.
    st.tuples(
        st.just("bank_many"),
        st.lists(
            st.tuples(st.integers(0, 9), st.sampled_from(["exact", "short", "rest", "no_number"])),
            min_size=2,
            max_size=3,
        ),
    ),
    st.tuples(st.just("refund"), st.sampled_from(["all", "half"])),
    # An upgrade that raises the prepaid next period too (one is renewed first if there is none).
    st.tuples(st.just("upgrade_next"), st.sampled_from(["users-50", "users-200"])),
    # A smaller plan chosen months ahead: scheduled unpaid, then the tick (time moves on) opens its payment.
    st.tuples(st.just("schedule_smaller"), st.sampled_from(["invoice", "card"])),
    st.tuples(st.just("refund_rights"), st.integers(0, 200), st.sampled_from(["suggested", "all"])),
    # Autopayment: switched on at a card checkout (with a card that renews, or one that declines once saved), the
    # renewal tick (the warning, then the charge or a retry a few days later), switched off.
    st.tuples(st.just("autopay_on"), st.booleans()),
    st.tuples(st.just("autopay_tick"), st.integers(0, 3)),
    st.tuples(st.just("autopay_cancel")),
)


@settings(
    max_examples=int(os.environ.get("LEDGER_EXAMPLES", "25")),
    deadline=None,
    stateful_step_count=10,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=3, max_size=14))
# Always run once: a paid plan, a renewal by card cancelled before it starts, then a company's card payment for it.
@example(
    steps=[
        ("bank", [0], "exact", False),
        ("cancel_scheduled", True),
        ("company_card", ("users-12", 6)),
        ("pay_card", 1, False),
        ("cancel_scheduled", False),
    ]
)
# And autopayment: a card that renews (the balance paying part), then one that declines, retried, then switched off.
@example(
    steps=[
        ("bank", [0], "over", False),
        ("autopay_on", True),
        ("autopay_tick", 0),
        ("autopay_on", False),
        ("autopay_tick", 0),
        ("autopay_tick", 1),
        ("autopay_cancel",),
        ("autopay_tick", 3),
    ]
)
# And once: an upgrade raising the prepaid next period, paid by card, that period cancelled (both parts back), then a
# smaller plan scheduled months ahead whose payment the tick opens (the balance pays it).
@example(
    steps=[
        ("bank", [0], "exact", False),
        ("upgrade_next", "users-50"),
        ("pay_card", 1, False),
        ("cancel_scheduled", True),
        ("schedule_smaller", "invoice"),
        ("schedule_smaller", "card"),
    ]
)
# Found by the property: money moved after the tick moved the clock into 2028 is in the report too.
@example(
    steps=[
        ("invoice", ("users-50", 12)),
        ("cancel_scheduled", True),
        ("invoice", ("users-24", 6)),
        ("bank", [7], "no_number", False),
        ("pay_card", 9, False),
        ("company_card", ("users-50", 12)),
        ("schedule_smaller", "card"),
        ("company_card", ("users-12", 9)),
        ("cancel_scheduled", False),
        ("upgrade", "users-50"),
        ("company_card", ("users-12", 9)),
        ("upgrade_next", "users-50"),
    ]
)
# Always run once: one statement paying part of an invoice and then its rest (found by ИНН and amount), and one
# paying an invoice twice (the second payment on the balance, flagged).
@example(
    steps=[
        ("bank_many", [(0, "short"), (0, "rest")]),
        ("invoice", ("users-24", 6)),
        ("bank_many", [(1, "exact"), (1, "exact"), (1, "no_number")]),
    ]
)
# Always run once: an order paid by СБП, and СБП money on the balance (the same order paid again) given back.
@example(steps=[("sbp", ("users-12", 6)), ("cancel", 2), ("pay_card", 1, True), ("refund", "all")])
def test_every_kopeck_is_applied_on_the_balance_or_refunded(app, db, make_account, steps):
    account = make_account(name="ООО «Ромашка»")
    give_requisites(db, account)
    orders: list[Order] = []
    invoices: list[Invoice] = []
    pages: list[Payment] = []

    def open_pages(row: Order, method=None) -> None:
        try:
            pages.append(open_card_page(app, db, row, now=moment, method=method))
        except PurchaseError:
            db.rollback()  # the balance paid it all: no card page

    sent = int(db.scalar(sa.select(sa.func.coalesce(sa.func.sum(Receipt.amount), 0))) or 0) + int(
        db.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(StatementLine.amount), 0)).where(
                StatementLine.status.in_([LineStatus.UNMATCHED.value, LineStatus.DISMISSED.value])
            )
        )
        or 0
    )
    moment = NOW
    # Every sequence starts where money can move: an invoice to pay and a card payment page open.
    steps = [("invoice", ("users-12", 6)), ("card", ("users-24", 6)), *steps]
    for step in steps:
        moment += timedelta(minutes=5)
        kind = step[0]
        if kind in ("invoice", "card", "company_card", "sbp"):
            (plan, months) = step[1]
            payer_type = "card" if kind == "sbp" else kind.removeprefix("company_")
            try:
                row = order(db, account, plan, months, payer_type=payer_type, now=moment)
            except PurchaseError:
                db.rollback()
                continue
            orders.append(row)
            if kind == "invoice":
                inv = invoice_for(app, db, row, now=moment)
                if inv is not None:
                    invoices.append(inv)
            else:
                if kind == "company_card":
                    # «Оплачиваю как компания — нужен УПД»: the order's record, then the card page as for anyone.
                    with app.app_context():
                        record_card_order(db, row, actor=None, now=moment, config=app.config)
                    db.commit()
                open_pages(row, method="sbp" if kind == "sbp" else None)
        elif kind == "upgrade":
            state = get_subscription_state(db, account.id, moment)
            if not state.is_paid:
                continue
            try:
                row = order(db, account, step[1], state.current.months, payer_type="card", now=moment)
            except PurchaseError:
                db.rollback()
                continue
            orders.append(row)
            open_pages(row)
        elif kind == "upgrade_next":
            state = get_subscription_state(db, account.id, moment)
            if not state.is_paid:
                continue
            if not state.scheduled:
                row = order(db, account, state.plan.code, 6, payer_type="card", now=moment)
                orders.append(row)
                with app.app_context():
                    settled = ledger.settle_from_balance(db, row, now=moment, config=app.config, actor=None)
                db.commit()
                if not settled:
                    sent += pay_by_card(app, db, row, now=moment).paid_amount or 0
                state = get_subscription_state(db, account.id, moment)
            if not state.is_paid:
                continue
            try:
                row = order(db, account, step[1], state.current.months, payer_type="card", now=moment)
            except PurchaseError:
                db.rollback()
                continue
            event(f"upgrade raising {len(list_order_topups(db, row.id))} later period(s)")
            orders.append(row)
            open_pages(row)
        elif kind == "schedule_smaller":
            state = get_subscription_state(db, account.id, moment)
            if not state.is_paid or state.plan.monthly_price <= 990_00:
                continue
            try:
                row = create_order(
                    db,
                    actor=None,
                    account_id=account.id,
                    plan_code="users-12",
                    months=6,
                    payer_type=step[1],
                    license_version="2026-01",
                    idempotency_key=f"ledger-{next(_keys):06d}",
                    now=moment,
                    defer_days=14,
                )
                db.commit()
            except PurchaseError:
                db.rollback()
                continue
            orders.append(row)
            if row.status == "scheduled":
                # Time moves on to the day its payment opens; the tick opens it (once) and issues its invoice.
                moment = max(moment, msk_midnight(row.opens_on) + timedelta(hours=1))
                with app.app_context():
                    tick(db, moment)
                    tick(db, moment + timedelta(minutes=1))
                db.expire_all()
                event(f"scheduled smaller plan opened: {db.get(Order, row.id).status}")
            if db.get(Order, row.id).status == "pending":
                if step[1] == "invoice":
                    inv = db.scalars(sa.select(Invoice).where(Invoice.order_id == row.id)).first()
                    inv = inv or invoice_for(app, db, row, now=moment)
                    if inv is not None:
                        invoices.append(inv)
                else:
                    open_pages(row)
        elif kind == "cancel" and orders:
            row = orders[step[1] % len(orders)]
            try:
                cancel_order(db, row.id, actor=None, reason="передумали", now=moment)
                db.commit()
            except PurchaseError:
                db.rollback()
        elif kind == "cancel_scheduled":
            # The owner cancels a prepaid next period (the last one, or tries the first): its money to the balance.
            state = get_subscription_state(db, account.id, moment)
            if not state.scheduled and state.is_paid:
                # Nothing prepaid yet: the owner renews by card first (the balance may pay it), then changes mind.
                row = order(db, account, state.plan.code, 6, payer_type="card", now=moment)
                orders.append(row)
                with app.app_context():
                    settled = ledger.settle_from_balance(db, row, now=moment, config=app.config, actor=None)
                db.commit()
                if not settled:
                    sent += pay_by_card(app, db, row, now=moment).paid_amount or 0
                state = get_subscription_state(db, account.id, moment)
            scheduled = state.scheduled
            if not scheduled:
                continue
            target = scheduled[-1] if step[1] else scheduled[0]
            try:
                cancel_scheduled_period(
                    db, account_id=account.id, period_id=target.id, actor=None, reason="передумали", now=moment
                )
                db.commit()
            except PurchaseError:
                db.rollback()
        elif kind == "pay_card" and pages:
            # The page may belong to an order canceled or withdrawn since: the money must still be accounted for.
            pay = pages.pop(step[1] % len(pages))
            pay = pay_on_card_page(app, db, pay, now=moment, twice=step[2])
            sent += pay.paid_amount or 0
        elif kind in ("bank", "bank_bulk") and invoices:
            targets = [invoices[i % len(invoices)] for i in step[1]]
            targets = list(dict.fromkeys(targets))
            db.expire_all()
            due = sum(inv.amount for inv in targets)
            amount = {"exact": due, "short": due - 100_00, "over": due + 50_00, "no_number": due}[step[2]]
            if amount <= 0:
                continue
            numbers = " и ".join(i.number for i in targets)
            purpose = "Оплата лицензии" if step[2] == "no_number" else f"Оплата по счетам {numbers}"
            doc = payment(f"{next(_keys)}", amount, purpose)
            if kind == "bank":
                docs = [doc, doc] if step[3] else [doc]
            else:
                others = [
                    payment(f"{next(_keys)}", 1000 + k, f"Оплата по договору поставки {k}", payer_inn="500100732259")
                    for k in range(2 * step[3])
                ]
                docs = [*others[: step[3]], doc, *others[step[3] :]]
            import_(app, db, *docs, now=moment)
            sent += sum(d["Сумма"] for d in docs)
            if kind == "bank_bulk":
                import_(app, db, *docs, now=moment + timedelta(minutes=1))  # nothing new: nothing recorded
        elif kind == "bank_many" and invoices:
            db.expire_all()
            docs = []
            for k, (index, how) in enumerate(step[1]):
                inv = invoices[index % len(invoices)]
                amount = {"exact": inv.amount, "short": inv.amount - 100_00, "rest": 100_00, "no_number": inv.amount}
                if amount[how] <= 0:
                    continue
                purpose = "Оплата лицензии" if how in ("rest", "no_number") else f"Оплата по счёту {inv.number}"
                docs.append(payment(f"{next(_keys)}", amount[how], purpose))
                docs.append(payment(f"{next(_keys)}", 1000 + k, "Оплата по договору", payer_inn="500100732259"))
            import_(app, db, *docs, now=moment)
            sent += sum(d["Сумма"] for d in docs)
        elif kind == "autopay_on":
            try:
                row = order(db, account, "users-12", 6, payer_type="card", now=moment)
            except PurchaseError:
                db.rollback()
                continue
            orders.append(row)
            with app.app_context():
                autopay.request_consent(db, row, None, config=app.config, now=moment)
                db.commit()
                if ledger.settle_from_balance(db, row, now=moment, config=app.config, actor=None):
                    db.commit()
                    continue
                db.commit()
            pay = open_card_page(app, db, row, now=moment)
            card = "4111111111111111" if step[1] else "4000000000000341"
            sent += pay_on_card_page(app, db, pay, now=moment, card=card).paid_amount or 0
        elif kind == "autopay_tick":
            # Days pass to the renewal's warning, then its charge (or a retry): money arrives from the saved card.
            state = get_subscription_state(db, account.id, moment)
            end = state.coverage_end
            if end is None:
                continue
            before = autopay_received(db)
            for moment_next in (msk_midnight(end - timedelta(days=5)), msk_midnight(end - timedelta(days=3 - step[1]))):
                moment = max(moment, moment_next + timedelta(hours=9))
                with app.app_context():
                    tick(db, moment)
            sent += autopay_received(db) - before
            for status in db.scalars(sa.select(AutopayRenewal.status).where(AutopayRenewal.account_id == account.id)):
                event(f"autopay renewal: {status}")
        elif kind == "autopay_cancel":
            autopay.cancel_autopay(db, account.id, actor=None, now=moment, reason="передумали")
            db.commit()
        elif kind == "refund":
            balance = ledger.account_balance(db, account.id)
            if balance <= 0:
                continue
            want = balance if step[1] == "all" else max(balance // 2, 1)
            made = refunds.request_refund(db, account.id, actor=None, now=moment, amount=want)
            db.commit()
            carry_out(app, db, made, moment)
        elif kind == "refund_rights":
            paid = [o for o in orders if db.get(Order, o.id).status == "paid"]
            if not paid:
                continue
            row = paid[-1]
            cut_on = moment.date() + timedelta(days=step[1])
            try:
                cut = rights_cut(db, row, cut_on)
                amount = max(cut.suggested_refund, 1) if step[2] == "suggested" else ledger.order_allocated(db, row.id)
                with app.app_context():
                    done = refunds.refund_rights(
                        db,
                        row.id,
                        cut_on=cut_on,
                        amount=amount,
                        reason="досрочное прекращение",
                        actor=None,
                        now=moment,
                        config=app.config,
                    )
                db.commit()
            except (PurchaseError, ledger.LedgerError):
                db.rollback()
                continue
            carry_out(app, db, done.refunds, moment)
        event(f"step: {kind}")
        check_invariants(db, sent)
    until = (moment + timedelta(days=2)).date()
    receipts = db.scalar(sa.select(sa.func.count()).select_from(Receipt).where(Receipt.account_id == account.id))
    event(f"receipts at the end: {min(receipts, 3)}{'+' if receipts > 3 else ''}")
    # The report for the books says the same as the ledger, to the kopeck.
    with app.app_context():
        out = app.test_cli_runner().invoke(
            # Through the last step's day: a smaller plan scheduled months ahead moves the clock to its payment.
            args=["payments", "report", "--from", "2026-01-01", "--to", f"{max(date(2027, 12, 31), until)}", "--json"]
        )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    mine = data["accounts"].get(str(account.id), {"received": 0, "allocated": 0, "refunded": 0, "balance": 0})
    t = ledger.account_totals(db, account.id)
    assert (mine["received"], mine["allocated"], mine["refunded"], mine["balance"]) == (
        t.received,
        t.allocated,
        t.refunded,
        t.balance,
    )
    assert data["received"] == data["allocated"] + data["balance"] + data["refunded"]


# --- each defect the ledger ends -----------------------------------------------------------------------------------

OWNER = "+79161112200"


@pytest.fixture
def company(make_account, db):
    account = make_account(name="ООО «Ромашка»", owner_phone=OWNER)
    give_requisites(db, account)
    return account


def test_cancelling_an_order_on_the_dashboard_annuls_its_invoice_and_takes_the_qr_away(app, db, client, auth, company):
    row = order(db, company)
    inv = invoice_for(app, db, row)
    auth.login(OWNER)
    assert 'class="invoice-qr"' in client.get(f"/documents/invoices/{inv.id}").get_data(as_text=True)
    assert post(client, f"/orders/{row.id}/cancel").status_code == 302
    page = client.get(f"/documents/invoices/{inv.id}").get_data(as_text=True)
    assert "Счёт аннулирован" in page and 'class="invoice-qr"' not in page
    db.expire_all()
    assert db.get(Invoice, inv.id).status == "canceled"
    # A transfer for it later: the company's money, on its balance and flagged — no УПД, no plan.
    import_(app, db, payment("700", inv.amount, f"Оплата по счёту № {inv.number}"))
    assert ledger.account_balance(db, company.id) == inv.amount
    assert db.scalar(sa.select(sa.func.count()).select_from(Upd)) == 0
    assert "отменён; деньги на балансе" in ledger.list_attention(db, company.id)[0].attention
    home = client.get("/").get_data(as_text=True)
    assert "На балансе компании" in home and "отменён; деньги на балансе" in home


def test_a_canceled_order_paid_later_does_not_cut_a_running_trial(app, db, company):
    start_trial(db, actor=None, account_id=company.id, plan_code="users-50", now=NOW)
    db.commit()
    row = order(db, company, "users-12", 6)
    inv = invoice_for(app, db, row)
    cancel_order(db, row.id, actor=None, reason="передумали", now=NOW)
    db.commit()
    import_(app, db, payment("701", inv.amount, f"Оплата по счёту № {inv.number}"), now=NOW + timedelta(days=1))
    state = get_subscription_state(db, company.id, NOW + timedelta(days=1))
    assert state.is_trial and state.plan.code == "users-50"
    assert ledger.account_balance(db, company.id) == inv.amount


def test_an_upgrade_withdrawn_while_its_card_page_was_open_is_paid_to_the_balance_and_flagged(app, db, company):
    pay_by_card(app, db, order(db, company, "users-12", 6, payer_type="card"))
    first = order(db, company, "users-24", 6, payer_type="card", now=NOW + timedelta(days=30))
    second = order(db, company, "users-50", 6, payer_type="card", now=NOW + timedelta(days=30))
    assert (first.kind, second.kind) == ("upgrade", "upgrade")
    left_open = open_card_page(app, db, first, now=NOW + timedelta(days=30))
    pay_by_card(app, db, second, now=NOW + timedelta(days=30))  # pays the other upgrade: this one is withdrawn
    db.expire_all()
    assert db.get(Order, first.id).status == "canceled"
    paid = pay_on_card_page(app, db, left_open, now=NOW + timedelta(days=30, minutes=5))
    assert paid.status == "flagged" and paid.status_reason == "order_not_applicable"
    assert ledger.account_balance(db, company.id) == first.amount
    state = get_subscription_state(db, company.id, NOW + timedelta(days=31))
    assert state.plan.code == "users-50"
    (flagged,) = ledger.list_attention(db, company.id)
    assert "на баланс" in flagged.attention


def test_the_same_payment_order_twice_in_one_file_is_listed_and_the_file_adds_up(app, db, company):
    inv = invoice_for(app, db, order(db, company))
    doc = payment("702", inv.amount, f"Оплата по счёту № {inv.number}")
    header = {
        "Отправитель": "Банк",
        "Получатель": "",
        "ДатаНачала": date(2026, 11, 26),
        "ДатаКонца": date(2026, 11, 26),
        "РасчСчет": SELLER_ACCOUNT,
    }
    data = build_statement(
        header,
        [doc, doc],
        "Windows",
        account_sections=[
            {
                "ДатаНачала": date(2026, 11, 26),
                "ДатаКонца": date(2026, 11, 26),
                "РасчСчет": SELLER_ACCOUNT,
                "НачальныйОстаток": 0,
                "ВсегоПоступило": 2 * inv.amount,
                "ВсегоСписано": 0,
                "КонечныйОстаток": 2 * inv.amount,
            }
        ],
    )
    with app.app_context():
        result = bank.import_statement(db, data, file_name="s.txt", actor=None, now=NOW)
    assert (len(result.matched), len(result.unmatched), result.duplicates) == (1, 1, 0)
    assert "встречается в выписке 2-й раз" in result.unmatched[0].reason
    assert result.recorded == result.declared == 2 * inv.amount and result.warning is None
    with app.app_context():
        again = bank.import_statement(db, data, file_name="s.txt", actor=None, now=NOW)
    assert again.duplicates == 2 and again.import_id is None  # a re-import changes nothing


def test_a_statement_whose_lines_leave_out_our_account_is_still_read(app, db, company):
    inv = invoice_for(app, db, order(db, company))
    doc = payment("703", inv.amount, f"Оплата по счёту № {inv.number}")
    doc["ПолучательСчет"] = ""
    result = import_(app, db, doc)
    assert result.incoming == 1 and [x.doc_number for x in result.matched] == ["703"]
    db.expire_all()
    assert db.get(Invoice, inv.id).status == "paid"


def test_one_payment_for_two_invoices_pays_both_in_the_order_named(app, db, company):
    a = invoice_for(app, db, order(db, company, "users-12", 6))
    b = invoice_for(app, db, order(db, company, "users-24", 6))
    result = import_(app, db, payment("704", a.amount + b.amount - 100_00, f"Оплата счетов {b.number} и {a.number}"))
    db.expire_all()
    assert db.get(Invoice, b.id).status == "paid"  # named first, paid first
    assert ledger.invoice_remaining(db, db.get(Invoice, a.id)) == 100_00
    assert "оплачено" in result.matched[0].reason and "осталось 100,00" in result.matched[0].reason


@pytest.mark.parametrize("written", ["сч.{serial}", "счёт № {serial}", "{year}/{serial}", "№{year} {serial:06d}"])
def test_invoice_numbers_as_accountants_write_them(app, db, company, written):
    inv = invoice_for(app, db, order(db, company))
    purpose = "Оплата по " + written.format(serial=inv.serial, year=inv.year) + " за лицензию"
    result = import_(app, db, payment("705", inv.amount, purpose))
    assert [x.doc_number for x in result.matched] == ["705"], result.unmatched and result.unmatched[0].reason
    db.expire_all()
    assert db.get(Invoice, inv.id).status == "paid"


def test_a_payment_naming_no_invoice_is_matched_by_the_payers_inn_and_amount_when_only_one_fits(app, db, company):
    inv = invoice_for(app, db, order(db, company, "users-24", 12))
    invoice_for(app, db, order(db, company, "users-12", 6))  # another open invoice of the company, another amount
    result = import_(app, db, payment("706", inv.amount, "Оплата лицензии на мессенджер"))
    (line,) = result.matched
    assert "по ИНН плательщика и сумме" in line.reason
    db.expire_all()
    assert db.get(Invoice, inv.id).status == "paid"


def test_the_balance_pays_first_at_checkout(app, db, client, auth, company):
    with app.app_context():
        receipt, _ = ledger.record_receipt(
            db,
            account_id=company.id,
            method="bank",
            amount=300_000,
            received_on=date(2026, 11, 20),
            source_key="test:advance",
            reference="п/п № 1 от 20.11.2026",
            now=NOW,
        )
        db.commit()
    auth.login(OWNER)
    page = client.get("/checkout?plan=users-12&months=6").get_data(as_text=True)
    assert "Оплачено с баланса" in page and "−3\u00a0000,00\u00a0₽" in page
    # The invoice asks only for the rest, and says what the advance covered.
    row = order(db, company, "users-12", 6)
    inv = invoice_for(app, db, row)
    assert inv.amount == row.amount - 300_000
    # An order the balance covers in full is paid at once: no invoice, no card.
    import_(app, db, payment("707", 900_000, "Аванс без счёта"))  # 9 000 ₽ to staff's list
    line = db.scalars(sa.select(StatementLine).where(StatementLine.doc_number == "707")).one()
    with app.app_context():
        statement_lines.credit_statement_line(db, line.id, company.id, actor=None, reason="аванс по письму", now=NOW)
    small = order(db, company, "users-12", 6, now=NOW + timedelta(minutes=1))
    assert invoice_for(app, db, small) is None
    db.expire_all()
    assert db.get(Order, small.id).status == "paid"


def test_the_owner_asks_for_the_balance_back_and_staff_return_it_to_the_card(app, db, client, auth, company):
    pay_by_card(app, db, order(db, company, "users-12", 6, payer_type="card"))
    row = order(db, company, "users-24", 6, payer_type="card")
    page = open_card_page(app, db, row)
    cancel_order(db, row.id, actor=None, reason="передумали", now=NOW)
    db.commit()
    pay_on_card_page(app, db, page)
    assert ledger.account_balance(db, company.id) == row.amount
    auth.login(OWNER)
    history = client.get("/payments").get_data(as_text=True)
    assert "Баланс компании" in history and f"Вернуть {row.amount // 100:,}".replace(",", "\u00a0") in history
    assert post(client, "/payments/refund").status_code == 302
    (refund,) = refunds.list_refunds(db, company.id)
    assert (refund.method, refund.amount, refund.status) == ("card", row.amount, "requested")
    assert ledger.account_balance(db, company.id) == 0
    with app.app_context():
        refunds.refund_through_provider(
            db,
            refund.id,
            provider=get_provider(app, "sandbox"),
            customer=payments.Customer(email="a@b.ru"),
            actor=None,
            now=NOW,
        )
        db.commit()
    db.expire_all()
    assert db.get(Refund, refund.id).status == "succeeded"
    assert db.get(Refund, refund.id).provider_refund_id.startswith("sbx_rf_")
    t = ledger.account_totals(db, company.id)
    assert t.received == t.allocated + t.refunded and t.balance == 0


def test_yookassa_refund_request_carries_the_refund_receipt():
    from portal.payments.providers.yookassa import YooKassaProvider

    provider = YooKassaProvider(shop_id="1", secret_key="s", trusted_ips="127.0.0.1/32", vat_rate="")
    body = provider.refund_request("2d9f-test", 594_000, payments.Customer(email="buh@example.ru"))
    assert body["payment_id"] == "2d9f-test" and body["amount"] == {"value": "5940.00", "currency": "RUB"}
    item = body["receipt"]["items"][0]
    assert item["amount"] == body["amount"] and body["receipt"]["customer"] == {"email": "buh@example.ru"}


def test_allocation_rows_never_exceed_what_arrived(app, db, company):
    """A direct look at the tables behind the history: allocations of a receipt sum to at most its amount."""
    inv = invoice_for(app, db, order(db, company))
    import_(app, db, payment("708", inv.amount + 500_00, f"Оплата по счёту № {inv.number}"))
    receipt = db.scalars(sa.select(Receipt)).one()
    applied = db.scalar(sa.select(sa.func.sum(Allocation.amount)).where(Allocation.receipt_id == receipt.id))
    assert (receipt.amount, applied) == (inv.amount + 500_00, inv.amount)
