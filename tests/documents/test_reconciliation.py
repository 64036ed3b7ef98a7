"""Акт сверки: a quarter with card and bank money, a part payment, an overpayment on the balance and a refund
balances against `flask payments report` to the kopeck, and its PDF and XLSX say so line by line."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from portal.billing.models import Order
from portal.billing.orders import create_order
from portal.documents import reconciliation
from portal.documents.invoices import issue_invoice
from portal.documents.models import Invoice, Upd
from portal.payments import ledger, refunds
from portal.payments.bank import import_statement
from portal.timeutil import msk_date
from tests.conftest import post
from tests.documents.factories import ORG, give_requisites, payment, statement

_keys = itertools.count(1)


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=UTC)


def order(db, account, plan: str, payer_type: str, now: datetime) -> Order:
    row = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code=plan,
        months=6,
        payer_type=payer_type,
        license_version="2026-01",
        idempotency_key=f"act-order-{next(_keys):06d}",
        now=now,
    )
    db.commit()
    return row


def invoice(app, db, account, plan: str, now: datetime) -> Invoice:
    row = order(db, account, plan, "invoice", now)
    with app.app_context():
        inv = issue_invoice(db, row, actor=None, now=now, config=app.config)
        db.commit()
    return inv


def pay_by_card(app, db, account, plan: str, now: datetime) -> Order:
    """Card money through the ledger's one path: a receipt recorded once, applied to the order."""
    row = order(db, account, plan, "card", now)
    n = next(_keys)
    with app.app_context():
        receipt, _ = ledger.record_receipt(
            db,
            account_id=account.id,
            method="card",
            amount=row.amount,
            received_on=msk_date(now),
            source_key=f"card:sandbox:act-{n}",
            reference=f"Карта, платёж act-{n}",
            now=now,
        )
        applied = ledger.pay_order(db, receipt, row.id, now=now, config=app.config)
        assert applied.completed
        db.commit()
    return row


def bank(app, db, inv: Invoice, amount: int, number: str, now: datetime) -> None:
    data = statement(payment(number, amount, f"Оплата по счёту № {inv.number}", day=msk_date(now)))
    with app.app_context():
        import_statement(db, data, file_name=f"{number}.txt", actor=None, now=now)
    db.commit()


@pytest.fixture
def quarter(app, db, make_account):
    """Q4 2026 of ООО «Ромашка», with money before and after it."""
    account = make_account(name="ООО «Ромашка»", accountant_phone="+79161234567")
    give_requisites(db, account)
    # September: an invoice overpaid by 60 ₽ — the quarter opens with an advance.
    september = invoice(app, db, account, "users-12", at(date(2026, 9, 10)))
    bank(app, db, september, september.amount + 6_000, "101", at(date(2026, 9, 11)))
    # October: an upgrade paid by card (no invoice, no УПД: rights granted when paid).
    card_order = pay_by_card(app, db, account, "users-24", at(date(2026, 10, 5)))
    # November: an upgrade invoiced and overpaid by 100 ₽ (kept on the balance).
    full = invoice(app, db, account, "users-50", at(date(2026, 11, 2)))
    bank(app, db, full, full.amount + 10_000, "202", at(date(2026, 11, 26)))
    # December: another upgrade, half paid; then 50 ₽ of the balance asked back.
    part = invoice(app, db, account, "users-200", at(date(2026, 12, 1)))
    bank(app, db, part, part.amount // 2, "303", at(date(2026, 12, 3)))
    with app.app_context():
        refunds.request_refund(
            db, account.id, actor=None, now=at(date(2026, 12, 10)), amount=5_000, reason="Просим вернуть"
        )
        db.commit()
    # January: the rest of the part payment — after the quarter, in no line of its акт.
    bank(app, db, part, part.amount - part.amount // 2, "404", at(date(2027, 1, 15)))
    db.expire_all()
    return {"account": account, "card": card_order, "full": full, "part": part, "september": september}


def report(app, start: str, end: str) -> dict:
    with app.app_context():
        out = app.test_cli_runner().invoke(args=["payments", "report", "--from", start, "--to", end, "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_quarter_balances_against_the_ledger_report_to_the_kopeck(app, db, quarter):
    account = quarter["account"]
    act = reconciliation.build_reconciliation(db, account.id, date(2026, 10, 1), date(2026, 12, 31), app.config)
    mine = report(app, "2026-10-01", "2026-12-31")["accounts"][str(account.id)]

    card, full, part = quarter["card"], quarter["full"], quarter["part"]
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == full.id)).one()
    assert act.opening == -6_000  # the September advance
    assert act.received == mine["received"] == card.amount + full.amount + 10_000 + part.amount // 2
    assert act.refunded == mine["refunded"] == 5_000
    assert act.debit_total == card.amount + upd.amount + 5_000
    assert act.credit_total == mine["received"]
    # Closing: the buyer's advance is what the ledger holds on the balance plus the half-paid invoice's money.
    assert act.ledger_balance == mine["balance_at_end"] == 6_000 + 10_000 - 5_000
    assert act.closing == -(mine["balance_at_end"] + part.amount // 2)
    assert act.applied_not_transferred == part.amount // 2
    assert act.closing == act.opening + act.debit_total - act.credit_total


def test_the_pdf_holds_every_line_of_the_period_and_nothing_else(app, db, quarter):
    account = quarter["account"]
    act = reconciliation.build_reconciliation(db, account.id, date(2026, 10, 1), date(2026, 12, 31), app.config)
    pdf = reconciliation.render_pdf(act)
    text = subprocess.run(["pdftotext", "-raw", "-", "-"], input=pdf, capture_output=True, check=True).stdout
    text = " ".join(text.decode().replace("\u00a0", " ").split())
    full, part, card = quarter["full"], quarter["part"], quarter["card"]
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == full.id)).one()

    def rub(k: int) -> str:
        return f"{k // 100:,}".replace(",", " ") + f",{k % 100:02d}"

    for needed in (
        "Акт сверки взаимных расчётов",
        "за период с 01.10.2026 по 31.12.2026",
        "По данным ООО «Мессенджер Плюс», руб.",
        "По данным ООО «Ромашка», руб.",
        "Сальдо начальное",
        rub(6_000),
        f"УПД № {upd.number} от {upd.doc_date:%d.%m.%Y}",
        rub(upd.amount),
        f"Передача прав по заказу № {card.id}",
        rub(card.amount),
        "п/п № 202",
        rub(full.amount + 10_000),
        "п/п № 303",
        rub(part.amount // 2),
        "Возврат денежных средств",
        rub(5_000),
        "Обороты за период",
        rub(act.debit_total),
        rub(act.credit_total),
        "Сальдо конечное",
        rub(-act.closing),
        f"задолженность в пользу ООО «Ромашка» составляет {rub(-act.closing)} руб.",
        "Главный бухгалтер",
        app.config["SELLER_DIRECTOR"],
        app.config["SELLER_ACCOUNTANT"],
    ):
        assert needed in text, needed
    assert "п/п № 101" not in text and "п/п № 404" not in text  # before and after the quarter


def test_xlsx_has_the_same_totals(app, db, quarter):
    from openpyxl import load_workbook

    account = quarter["account"]
    act = reconciliation.build_reconciliation(db, account.id, date(2026, 10, 1), date(2026, 12, 31), app.config)
    sheet = load_workbook(io.BytesIO(reconciliation.render_xlsx(act))).active
    rows = {row[1]: row for row in sheet.iter_rows(values_only=True) if row and row[1]}
    assert rows["Сальдо начальное"][3] == 60.0
    assert round(rows["Обороты за период"][2] * 100) == act.debit_total
    assert round(rows["Обороты за период"][3] * 100) == act.credit_total
    assert round(rows["Сальдо конечное"][3] * 100) == -act.closing
    assert sheet.cell(4, 5).value == "По данным ООО «Ромашка», руб."
    table = list(sheet.iter_rows(min_row=6, max_row=5 + len(act.lines) + 3, values_only=True))
    assert table[-1][1] == "Сальдо конечное"
    assert all(all(cell is None for cell in row[4:8]) for row in table)  # the buyer's columns are the buyer's


def test_accountant_downloads_the_act_for_a_quarter_from_the_documents_page(app, db, quarter, auth, client):
    auth.login("+79161234567")
    page = client.get("/documents").get_data(as_text=True)
    assert "Акт сверки взаиморасчётов" in page
    resp = client.get("/documents/reconciliation?period=2026-Q4&format=pdf")
    assert resp.status_code == 200 and resp.data.startswith(b"%PDF")
    assert "2026" in resp.headers["Content-Disposition"]
    resp = client.get("/documents/reconciliation?start=01.10.2026&end=31.12.2026&format=xlsx")
    assert resp.status_code == 200 and resp.data.startswith(b"PK")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=2026-12-31&end=2026-10-01", "Конец периода раньше его начала"),
        ("start=2026-10-01&end=%EF%BC%92026-12-31", "Дата конца указана неверно"),  # a full-width digit
        ("start=2026-10-01%00&end=2026-12-31", "недопустимые символы"),  # refused before the view
        ("start=2020-01-01&end=2026-12-31", "не больше чем за три года"),
        ("period=2026-Q5", "Период указан неверно"),
    ],
)
def test_a_bad_period_is_refused_with_a_message(app, db, quarter, auth, client, query, message):
    auth.login("+79161234567")
    resp = client.get(f"/documents/reconciliation?{query}&format=pdf")
    assert resp.status_code == 400
    assert message in resp.get_data(as_text=True)


def test_a_company_sees_only_its_own_act(app, db, quarter, make_account, auth, client):
    other = make_account(name="ООО «Другая»", accountant_phone="+79169990000")
    give_requisites(db, other, {**ORG, "name": "ООО «Другая»", "inn": "7707083893", "kpp": "773601001"})
    auth.login("+79169990000")
    resp = client.get("/documents/reconciliation?period=2026-Q4&format=xlsx")
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(resp.data)).active
    cells = " ".join(str(c) for row in sheet.iter_rows(values_only=True) for c in row if c)
    assert "Ромашка" not in cells and "п/п" not in cells
    assert post(client, "/documents/edo/1/resend").status_code == 404  # nobody's row
