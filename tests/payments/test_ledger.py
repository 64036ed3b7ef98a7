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
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from portal.billing import service as billing
from portal.billing.models import Order, SubscriptionPeriod
from portal.documents import render
from portal.documents.invoices import issue_invoice
from portal.documents.models import Invoice, LineStatus, StatementLine, Upd
from portal.payments import bank, ledger
from portal.payments import service as payments
from portal.payments.models import Payment, Receipt
from portal.payments.providers import get_provider
from tests.documents.factories import give_requisites, payment, statement

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
_keys = itertools.count(1)


@pytest.fixture(autouse=True)
def quick_render(monkeypatch):
    """Money is about sums, not layout: stand-ins for WeasyPrint keep hundreds of documents fast."""
    monkeypatch.setattr(render, "render_invoice_pdf", lambda ctx: f"%PDF-invoice {ctx['number']}".encode())
    monkeypatch.setattr(render, "render_upd_pdf", lambda ctx: f"%PDF-upd {ctx['number']}".encode())


def order(db, account, plan="users-12", months=6, payer_type="invoice", now=NOW) -> Order:
    row = billing.create_order(
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
        inv = issue_invoice(db, row, actor=None, now=now, config=app.config)
        db.commit()
    return inv


def open_card_page(app, db, row: Order, now=NOW) -> Payment:
    """Checkout sends the payer to the provider's page (which may stay open while the order changes)."""
    with app.app_context():
        pay, _url = payments.start_card_payment(
            db, row, None, provider=get_provider(app, "sandbox"), return_url="http://x/", now=now
        )
    return pay


def pay_on_card_page(app, db, pay: Payment, now=NOW, twice=False) -> Payment:
    """The payer presses Pay; the notification (maybe delivered twice) settles it through the ledger."""
    provider = get_provider(app, "sandbox")
    with app.app_context():
        provider.complete(pay.provider_payment_id, method="bank_card")
        for _ in range(2 if twice else 1):
            payments.process_provider_payment(db, provider, pay.provider_payment_id, now=now, source="webhook")
    db.expire_all()
    return db.get(Payment, pay.id)


def pay_by_card(app, db, row: Order, now=NOW, twice=False) -> Payment:
    return pay_on_card_page(app, db, open_card_page(app, db, row, now), now, twice)


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
        assert periods <= 1, f"order {row.id} applied {periods} times"
        if row.status == "paid":
            assert applied == row.amount and periods == 1, row
        elif row.status in ("canceled", "expired"):
            assert applied == 0 and periods == 0, row
        else:
            assert 0 <= applied < row.amount and periods == 0, row
    for inv in db.scalars(sa.select(Invoice)):
        owner = db.get(Order, inv.order_id)
        if inv.status == "issued":
            assert owner.status == "pending", f"invoice {inv.number} payable for a {owner.status} order"
    for upd in db.scalars(sa.select(Upd)):
        inv = db.get(Invoice, upd.invoice_id)
        assert db.get(Order, inv.order_id).status == "paid", f"УПД {upd.number} without granted rights"


# --- the property ---------------------------------------------------------------------------------------------

PLANS = st.sampled_from([("users-12", 6), ("users-24", 6), ("users-12", 9), ("users-50", 12)])
STEP = st.one_of(
    st.tuples(st.just("invoice"), PLANS),
    st.tuples(st.just("card"), PLANS),
    st.tuples(st.just("upgrade"), st.sampled_from(["users-50", "users-200"])),
    st.tuples(st.just("cancel"), st.integers(0, 9)),
    st.tuples(st.just("pay_card"), st.integers(0, 9), st.booleans()),
    st.tuples(
        st.just("bank"),
        st.lists(st.integers(0, 9), min_size=1, max_size=2),
        st.sampled_from(["exact", "short", "over", "no_number"]),
        st.booleans(),
    ),
    st.tuples(st.just("refund"), st.sampled_from(["all", "half"])),
)


@settings(
    max_examples=int(os.environ.get("LEDGER_EXAMPLES", "25")),
    deadline=None,
    stateful_step_count=10,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=3, max_size=14))
def test_every_kopeck_is_applied_on_the_balance_or_refunded(app, db, make_account, steps):
    account = make_account(name="ООО «Ромашка»")
    give_requisites(db, account)
    orders: list[Order] = []
    invoices: list[Invoice] = []
    pages: list[Payment] = []

    def open_pages(row: Order) -> None:
        try:
            pages.append(open_card_page(app, db, row, now=moment))
        except billing.PurchaseError:
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
        if kind in ("invoice", "card"):
            (plan, months) = step[1]
            try:
                row = order(db, account, plan, months, payer_type=kind, now=moment)
            except billing.PurchaseError:
                db.rollback()
                continue
            orders.append(row)
            if kind == "invoice":
                inv = invoice_for(app, db, row, now=moment)
                if inv is not None:
                    invoices.append(inv)
            else:
                open_pages(row)
        elif kind == "upgrade":
            state = billing.get_subscription_state(db, account.id, moment)
            if not state.is_paid:
                continue
            try:
                row = order(db, account, step[1], state.current.months, payer_type="card", now=moment)
            except billing.PurchaseError:
                db.rollback()
                continue
            orders.append(row)
            open_pages(row)
        elif kind == "cancel" and orders:
            row = orders[step[1] % len(orders)]
            try:
                billing.cancel_order(db, row.id, actor=None, reason="передумали", now=moment)
                db.commit()
            except billing.PurchaseError:
                db.rollback()
        elif kind == "pay_card" and pages:
            # The page may belong to an order canceled or withdrawn since: the money must still be accounted for.
            pay = pages.pop(step[1] % len(pages))
            pay = pay_on_card_page(app, db, pay, now=moment, twice=step[2])
            sent += pay.paid_amount or 0
        elif kind == "bank" and invoices:
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
            docs = [doc, doc] if step[3] else [doc]
            import_(app, db, *docs, now=moment)
            sent += amount * len(docs)
        elif kind == "refund":
            balance = ledger.account_balance(db, account.id)
            if balance <= 0:
                continue
            want = balance if step[1] == "all" else max(balance // 2, 1)
            made = ledger.request_refund(db, account.id, actor=None, now=moment, amount=want)
            db.commit()
            provider = get_provider(app, "sandbox")
            for refund in made:
                with app.app_context():
                    if refund.method == "card":
                        ledger.refund_through_provider(
                            db,
                            refund.id,
                            provider=provider,
                            customer=payments.Customer(phone="+79160000000"),
                            actor=None,
                            now=moment,
                        )
                    else:
                        ledger.complete_bank_refund(db, refund.id, actor=None, reference="п/п № 1", now=moment)
                db.commit()
        event(f"step: {kind}")
        check_invariants(db, sent)
    receipts = db.scalar(sa.select(sa.func.count()).select_from(Receipt).where(Receipt.account_id == account.id))
    event(f"receipts at the end: {min(receipts, 3)}{'+' if receipts > 3 else ''}")
    # The report for the books says the same as the ledger, to the kopeck.
    with app.app_context():
        out = app.test_cli_runner().invoke(
            args=["payments", "report", "--from", "2026-01-01", "--to", "2027-12-31", "--json"]
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
