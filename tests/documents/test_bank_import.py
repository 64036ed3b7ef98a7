"""Bank-statement import: exact payments pay invoices and activate plans; every other payment waits for support."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.accounts.models import User
from portal.audit import AuditLog
from portal.billing.models import Order
from portal.billing.settlement import apply_paid_order
from portal.billing.subscriptions import get_subscription_state
from portal.documents.invoices import DocumentsError
from portal.documents.models import Invoice, Upd
from portal.documents.service import cancel_invoice
from portal.payments import ledger
from portal.payments.bank import import_statement
from portal.payments.models import LineStatus, StatementImport, StatementLine
from portal.payments.statement import StatementError
from portal.payments.statement_lines import (
    AmountMismatch,
    dismiss_statement_line,
    link_statement_line,
    list_unmatched_lines,
    mark_invoice_paid,
)
from tests.conftest import post
from tests.documents.factories import IP, NOW, give_requisites, issue, payment, statement

STATEMENTS = Path(__file__).parent / "statements"
LATER = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
STAFF = "+79990000099"


def sample(name: str) -> bytes:
    return (STATEMENTS / name).read_bytes()


def run_import(app, db, data: bytes, now: datetime = LATER):
    with app.app_context():
        return import_statement(db, data, file_name="выписка.txt", actor=None, now=now)


def status_of(db, invoice: Invoice) -> tuple[str, str]:
    db.expire_all()
    fresh = db.get(Invoice, invoice.id)
    order = db.get(Order, fresh.order_id)
    return fresh.status, order.status


@pytest.fixture
def quick_render(monkeypatch):
    """Matching is about money, not layout: a stand-in for WeasyPrint keeps these tests fast (the PDFs have their own)."""
    from portal.documents import render

    monkeypatch.setattr(render, "render_invoice_pdf", lambda ctx: f"%PDF-invoice {ctx['number']}".encode())
    monkeypatch.setattr(render, "render_upd_pdf", lambda ctx: f"%PDF-upd {ctx['number']}".encode())


@pytest.fixture
def three_invoices(quick_render, app, db, make_account):
    """2026-000001: 8 464,50 (users-12, 9 months); 000002: 22 208,40 (users-24, 12); 000003: 5 940,00 (users-12, 6)."""
    account = make_account(name="ООО «Ромашка»")
    give_requisites(db, account)
    invoices = [
        issue(app, db, account),
        issue(app, db, account, plan="users-24", months=12),
        issue(app, db, account, plan="users-12", months=6),
    ]
    assert [(i.number, i.amount) for i in invoices] == [
        ("2026-000001", 846_450),
        ("2026-000002", 2_220_840),
        ("2026-000003", 594_000),
    ]
    return account, invoices


def test_windows_statement_each_outcome(app, db, three_invoices):
    account, (first, second, third) = three_invoices
    result = run_import(app, db, sample("outcomes_windows.txt"))
    assert (result.documents_total, result.incoming) == (8, 7)  # № 900 is our own outgoing payment
    # Every kopeck the statement says arrived is accounted for, and nothing warns.
    assert (result.recorded, result.declared, result.warning) == (6_486_900, 6_486_900, None)

    # № 512: the exact payment of 2026-000001 pays it and activates the plan.
    assert status_of(db, first) == ("paid", "paid")
    state = get_subscription_state(db, account.id, LATER)
    assert state.is_paid and state.plan.code == "users-12"
    paid = db.get(Invoice, first.id)
    assert (paid.paid_on, paid.payment_reference) == (date(2026, 11, 26), "п/п № 512 от 26.11.2026")
    assert db.get(Order, first.order_id).payment_reference == "п/п № 512 от 26.11.2026"

    # The company is found for every payment naming its invoice; what each did is said on the line.
    assert [line.doc_number for line in result.matched] == ["512", "513", "514", "516"]
    said = {line.doc_number: line.reason for line in result.matched}
    assert said["512"] == "Счёт № 2026-000001 оплачен"
    # № 513: a part payment stays on the invoice, which shows what is left.
    assert said["513"] == "По счёту № 2026-000002 оплачено 20\u00a0000,00\u00a0₽, осталось 2\u00a0208,40\u00a0₽"
    assert status_of(db, second) == ("issued", "pending")
    assert ledger.invoice_remaining(db, db.get(Invoice, second.id)) == 220_840
    # № 514: an overpayment pays the invoice; the rest is on the company's balance.
    assert said["514"] == "Счёт № 2026-000003 оплачен; на баланс компании 60,00\u00a0₽"
    assert status_of(db, third) == ("paid", "paid")
    # № 516: a second payment of a paid invoice is not applied again: it is on the balance, flagged to staff.
    assert said["516"].startswith("По счёту № 2026-000001 не применено (заказ № ")
    assert said["516"].endswith("уже оплачен (п/п № 512 от 26.11.2026)), деньги на балансе компании")
    assert ledger.account_balance(db, account.id) == 6_000 + 846_450
    flagged = ledger.list_attention(db, account.id)
    assert [r.reference for r in flagged] == ["п/п № 514 от 26.11.2026", "п/п № 516 от 26.11.2026"]

    reasons = {line.doc_number: line.reason for line in result.unmatched}
    assert reasons == {
        "515": "Счёт № 2026-000999 не найден",
        "88": "ИНН плательщика (500301234503) не совпадает с ИНН покупателя по счёту № 2026-000003 (7728146350)",
        "89": "В назначении платежа нет номера счёта, а по ИНН и сумме счёт однозначно не найден",
    }
    assert [line.doc_number for line in list_unmatched_lines(db)] == ["515", "88", "89"]
    # 000001's rights begin today: its УПД is formed; 000003's months follow them, so its УПД waits for that day.
    assert db.scalar(sa.select(sa.func.count()).select_from(Upd)) == 1
    assert db.get(Invoice, third.id).upd_due_on == date(2027, 8, 27)
    # The payer's name came through cp1251 intact.
    assert {line.payer_name for line in result.unmatched} >= {"Индивидуальный предприниматель Ёлкина Юлия Эдуардовна"}


def test_dos_statement_pays_a_sole_proprietors_invoice(app, db, make_account):
    account = make_account(name="ИП Соколов")
    give_requisites(db, account, IP)
    invoice = issue(app, db, account, months=6)
    assert (invoice.number, invoice.amount) == ("2026-000001", 594_000)
    result = run_import(app, db, sample("ip_dos.txt"))
    assert [line.payer_name for line in result.matched] == ["Индивидуальный предприниматель Соколов Сергей Викторович"]
    assert status_of(db, invoice) == ("paid", "paid")
    upd = db.scalars(sa.select(Upd)).one()
    # The payment reached the seller's account on 27.11: that is the payment date (and the УПД's).
    assert (upd.number, upd.doc_date, upd.status) == ("2026-000001", date(2026, 11, 27), "formed")
    assert db.get(Invoice, invoice.id).payment_reference == "п/п № 1207 от 26.11.2026"


def test_importing_the_same_statement_again_changes_nothing(app, db, three_invoices):
    run_import(app, db, sample("outcomes_windows.txt"))
    before = {
        "lines": db.scalar(sa.select(sa.func.count()).select_from(StatementLine)),
        "upds": db.scalar(sa.select(sa.func.count()).select_from(Upd)),
        "audit": db.scalar(sa.select(sa.func.count()).select_from(AuditLog)),
        "orders": db.execute(sa.select(Order.id, Order.status).order_by(Order.id)).all(),
        "imports": db.scalar(sa.select(sa.func.count()).select_from(StatementImport)),
    }
    again = run_import(app, db, sample("outcomes_windows.txt"), now=datetime(2026, 11, 28, 7, tzinfo=UTC))
    assert (len(again.matched), len(again.unmatched), again.duplicates) == (0, 0, 7)
    assert before == {
        "lines": db.scalar(sa.select(sa.func.count()).select_from(StatementLine)),
        "upds": db.scalar(sa.select(sa.func.count()).select_from(Upd)),
        "audit": db.scalar(sa.select(sa.func.count()).select_from(AuditLog)),
        "orders": db.execute(sa.select(Order.id, Order.status).order_by(Order.id)).all(),
        "imports": db.scalar(sa.select(sa.func.count()).select_from(StatementImport)),
    }
    assert again.import_id is None


def test_the_same_payment_order_in_another_statement_is_not_counted_twice(app, db, three_invoices):
    _, (first, *_rest) = three_invoices
    one = statement(payment("512", 846_450, "Оплата по счёту № 2026-000001"))
    run_import(app, db, one)
    # The month's statement repeats the day's payment, in another encoding and with other payments.
    month = statement(
        payment("512", 846_450, "Оплата по счёту № 2026-000001"),
        payment("600", 594_000, "Оплата по счёту № 2026-000003"),
        encoding="UTF-8",
    )
    result = run_import(app, db, month)
    assert result.duplicates == 1
    assert [line.doc_number for line in result.matched] == ["600"]


def test_a_malformed_file_is_refused_whole_with_the_line_and_what_is_wrong(app, db, three_invoices):
    _, (first, *_rest) = three_invoices
    with pytest.raises(StatementError) as exc:
        run_import(app, db, sample("broken_unclosed.txt"))
    assert str(exc.value) == "Строка 45: Секция «Платежное поручение» не закрыта строкой «КонецДокумента»"
    # The exact payment of 2026-000001 is in the file too, before the broken section: still nothing imported.
    assert db.scalar(sa.select(sa.func.count()).select_from(StatementImport)) == 0
    assert db.scalar(sa.select(sa.func.count()).select_from(StatementLine)) == 0
    assert status_of(db, first) == ("issued", "pending")


@pytest.mark.parametrize(
    "replace, message",
    [
        (("Сумма=8464.50", "Сумма=8464,5О"), "Строка 24: Неверная сумма «8464,5О»"),
        (
            ("Дата=26.11.2026\r\nСумма=8464.50", "Дата=31.11.2026\r\nСумма=8464.50"),
            "Строка 23: Неверная дата в поле «Дата»",
        ),
        (("1CClientBankExchange", "1CClientBank"), "Строка 1: Это не файл выписки"),
        (("КонецФайла\r\n", ""), "Файл не завершён строкой «КонецФайла»"),
    ],
)
def test_bad_amount_date_or_header_names_the_line(app, db, three_invoices, replace, message):
    data = sample("outcomes_windows.txt").decode("cp1251").replace(*replace, 1).encode("cp1251")
    with pytest.raises(StatementError) as exc:
        run_import(app, db, data)
    assert message in str(exc.value)
    assert db.scalar(sa.select(sa.func.count()).select_from(StatementLine)) == 0


def test_a_nul_in_a_purpose_refuses_the_file_and_imports_nothing(app, db, three_invoices):
    # Issue #14: PostgreSQL cannot store a NUL in text (the import was a 500 there); the file is refused whole instead.
    _, (first, *_rest) = three_invoices
    data = statement(payment("512", first.amount, f"Оплата по счёту № {first.number}\x00"))
    with pytest.raises(StatementError) as exc:
        run_import(app, db, data)
    assert "управляющий символ U+0000" in str(exc.value)
    assert db.scalar(sa.select(sa.func.count()).select_from(StatementImport)) == 0
    assert db.scalar(sa.select(sa.func.count()).select_from(StatementLine)) == 0
    assert status_of(db, first) == ("issued", "pending")


# --- the staff page and the command line ---------------------------------------------------------------


@pytest.fixture
def staff(db):
    user = User(phone=STAFF, name="Служба поддержки", is_staff=True)
    db.add(user)
    db.commit()
    return user


def test_staff_uploads_a_statement_and_sees_what_was_not_matched(client, auth, db, staff, three_invoices):
    auth.login(STAFF)
    page = client.get("/documents/statements/import")
    assert page.status_code == 200
    resp = post(
        client,
        "/documents/statements/import",
        {"statement": (STATEMENTS.joinpath("outcomes_windows.txt").open("rb"), "выписка.txt")},
        content_type="multipart/form-data",
        follow_redirects=True,  # to the import's progress in the console (the task has run: tests run it at once)
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "сопоставлено: 4, не сопоставлено: 3" in html
    assert "Счёт № 2026-000999 не найден" in html
    assert "В назначении платежа нет номера счёта" in html


def test_staff_upload_of_a_broken_file_shows_the_line_and_imports_nothing(client, auth, db, staff, three_invoices):
    auth.login(STAFF)
    resp = post(
        client,
        "/documents/statements/import",
        {"statement": (STATEMENTS.joinpath("broken_unclosed.txt").open("rb"), "выписка.txt")},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert "Файл не принят, ничего не загружено. Строка 45: Секция «Платежное поручение» не закрыта" in html
    assert db.scalar(sa.select(sa.func.count()).select_from(StatementLine)) == 0


def test_staff_upload_of_a_file_with_a_nul_is_refused_naming_the_line(client, auth, db, staff, three_invoices):
    _, (first, *_rest) = three_invoices
    data = statement(payment("512", first.amount, f"Оплата по счёту № {first.number}", payer_name="ООО \x00Ромашка"))
    # The name stands in both «Плательщик» («ИНН … name») and «Плательщик1»: the first of them is the line named.
    lines = data.split(b"\r\n")
    line = next(number for number, text in enumerate(lines, start=1) if b"\x00" in text)
    assert lines[line - 1].startswith("Плательщик=".encode("cp1251"))
    auth.login(STAFF)
    resp = post(
        client,
        "/documents/statements/import",
        {"statement": (io.BytesIO(data), "выписка.txt")},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert f"Файл не принят, ничего не загружено. Строка {line}: В поле «Плательщик» управляющий символ U+0000" in html
    assert db.scalar(sa.select(sa.func.count()).select_from(StatementLine)) == 0


def test_the_upload_page_does_not_exist_for_customers(client, auth, three_invoices):
    account, _ = three_invoices
    auth.login("+79160010000")  # the owner of the factory's first account
    assert client.get("/documents/statements/import").status_code == 404
    assert post(client, "/documents/statements/import", {}).status_code == 404


def test_command_line_import(app, db, three_invoices, tmp_path):
    _, (first, *_rest) = three_invoices
    path = tmp_path / "выписка.txt"
    path.write_bytes(sample("outcomes_windows.txt"))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["payments", "import-statement", str(path)])
    assert result.exit_code == 0, result.output
    assert "сопоставлено: 4, не сопоставлено: 3" in result.output
    assert 'не сопоставлен: п/п № 515 от 26.11.2026, ООО "РОМАШКА": Счёт № 2026-000999 не найден' in result.output
    assert status_of(db, first) == ("paid", "paid")

    broken = tmp_path / "broken.txt"
    broken.write_bytes(sample("broken_unclosed.txt"))
    result = runner.invoke(args=["payments", "import-statement", str(broken)])
    assert result.exit_code == 1
    assert "Строка 45" in result.output


# --- support's decisions -------------------------------------------------------------------------------


def test_support_marks_an_invoice_paid_by_hand_and_the_upd_follows(app, db, staff, three_invoices):
    account, (first, *_rest) = three_invoices
    with app.app_context():
        mark_invoice_paid(
            db, first.id, actor=staff, bank_reference="п/п № 77 от 26.11.2026", paid_on=date(2026, 11, 26), now=LATER
        )
        with pytest.raises(DocumentsError, match="уже оплачен"):
            mark_invoice_paid(
                db, first.id, actor=staff, bank_reference="п/п № 78", paid_on=date(2026, 11, 26), now=LATER
            )
    assert status_of(db, first) == ("paid", "paid")
    upd = db.scalars(sa.select(Upd)).one()
    assert upd.status == "formed"
    assert upd.context["payment_docs"] == [{"number": "77", "date": {"$date": "2026-11-26"}, "amount": 846_450}]
    actions = db.scalars(sa.select(AuditLog.action).where(AuditLog.actor_user_id == staff.id)).all()
    assert "documents.invoice_paid" in actions and "billing.order_paid" in actions


def test_support_cancels_an_unpaid_invoice_and_a_later_payment_is_not_applied(app, db, staff, three_invoices):
    _, (first, *_rest) = three_invoices
    with app.app_context():
        cancel_invoice(db, first.id, actor=staff, reason="Клиент передумал", now=LATER)
    assert status_of(db, first) == ("canceled", "canceled")
    result = run_import(app, db, statement(payment("512", 846_450, "Оплата по счёту № 2026-000001")))
    # The money is the company's: on its balance, flagged to staff and the owner; the canceled order stays canceled,
    # the invoice annulled, and no УПД says rights were granted.
    (line,) = result.matched
    assert "по счёту № 2026-000001 не применено" in line.reason.lower() and "на балансе" in line.reason
    assert status_of(db, first) == ("canceled", "canceled")
    assert db.scalar(sa.select(sa.func.count()).select_from(Upd)) == 0
    assert ledger.account_balance(db, first.account_id) == 846_450
    assert [r.reference for r in ledger.list_attention(db, first.account_id)] == ["п/п № 512 от 26.11.2026"]
    assert not get_subscription_state(db, first.account_id, LATER).is_paid
    with app.app_context(), pytest.raises(DocumentsError, match="аннулирован"):
        mark_invoice_paid(db, first.id, actor=staff, bank_reference="п/п 1", paid_on=date(2026, 11, 26), now=LATER)


def test_support_links_an_underpayment_only_when_confirmed(app, db, staff, three_invoices):
    account, (_first, second, _third) = three_invoices
    # A payment that names no invoice and fits none by amount: staff find it is for 2026-000002.
    result = run_import(app, db, statement(payment("513", 2_000_000, "Оплата лицензии на мессенджер")))
    (underpaid,) = result.unmatched
    with app.app_context():
        with pytest.raises(AmountMismatch, match="не равна сумме к оплате по счёту № 2026-000002"):
            link_statement_line(db, underpaid.id, second.id, actor=staff, confirm_amount_mismatch=False, now=LATER)
        db.rollback()
        assert status_of(db, second) == ("issued", "pending")
        line = link_statement_line(db, underpaid.id, second.id, actor=staff, confirm_amount_mismatch=True, now=LATER)
    assert line.status == LineStatus.LINKED
    assert "при расхождении суммы" in line.resolution_note
    # A short payment pays part of the invoice; the rest is still to be paid, and a second transfer tops it up.
    assert status_of(db, second) == ("issued", "pending")
    assert ledger.invoice_remaining(db, db.get(Invoice, second.id)) == 220_840
    assert "513" not in [x.doc_number for x in list_unmatched_lines(db)]
    result = run_import(app, db, statement(payment("514", 220_840, "Доплата по счёту 2026-000002")))
    assert [x.reason for x in result.matched] == ["Счёт № 2026-000002 оплачен"]
    assert status_of(db, second) == ("paid", "paid")
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == second.id)).one()
    assert upd.amount == 2_220_840


def test_support_dismisses_a_payment_that_is_not_for_an_invoice(app, db, staff, three_invoices):
    result = run_import(app, db, sample("outcomes_windows.txt"))
    loan = next(line for line in result.unmatched if line.doc_number == "89")
    with app.app_context():
        with pytest.raises(DocumentsError, match="Укажите"):
            dismiss_statement_line(db, loan.id, actor=staff, reason=" ", now=LATER)
        dismiss_statement_line(db, loan.id, actor=staff, reason="Возврат займа, не оплата лицензии", now=LATER)
        with pytest.raises(DocumentsError, match="уже разобран"):
            dismiss_statement_line(db, loan.id, actor=staff, reason="ещё раз", now=LATER)
    assert "89" not in [x.doc_number for x in list_unmatched_lines(db)]
    record = db.scalars(sa.select(AuditLog).where(AuditLog.action == "documents.statement_line_dismissed")).one()
    assert record.reason == "Возврат займа, не оплата лицензии"


def test_a_transfer_for_an_order_already_paid_by_card_activates_nothing_twice(app, db, three_invoices):
    account, (first, *_rest) = three_invoices
    apply_paid_order(db, first.order_id, now=NOW, reference="card:pay_123")
    db.commit()
    result = run_import(app, db, statement(payment("512", 846_450, "Оплата по счёту № 2026-000001")))
    (line,) = result.matched
    assert "уже оплачен (card:pay_123)" in line.reason and "деньги на балансе" in line.reason
    assert db.scalar(sa.select(sa.func.count()).select_from(Upd)) == 0
    assert ledger.account_balance(db, account.id) == 846_450


def test_the_import_command_joins_a_payments_group_that_already_exists():
    import click
    from flask import Flask

    from portal.payments import cli

    app = Flask("x")

    @click.group("payments")
    def payments_group() -> None:
        pass

    @payments_group.command("recheck")
    def recheck() -> None:
        pass

    app.cli.add_command(payments_group)
    cli.init_app(app)
    assert sorted(app.cli.commands["payments"].commands) == ["import-statement", "recheck", "report"]

    alone = Flask("y")
    cli.init_app(alone)
    assert sorted(alone.cli.commands["payments"].commands) == ["import-statement", "report"]
