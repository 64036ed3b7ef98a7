"""A statement is imported in bulk: the SQL it costs does not grow with its lines, and importing it again writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from portal.documents.models import Invoice, Upd
from portal.payments.bank import import_statement
from portal.payments.models import LineStatus, StatementImport, StatementLine
from tests.documents.factories import give_requisites, issue, payment, statement

LATER = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)


@pytest.fixture
def quick_render(monkeypatch):
    """The SQL of an import is the point here, not the layout: a stand-in for WeasyPrint."""
    from portal.documents import render

    monkeypatch.setattr(render, "render_invoice_pdf", lambda ctx: f"%PDF-invoice {ctx['number']}".encode())
    monkeypatch.setattr(render, "render_upd_pdf", lambda ctx: f"%PDF-upd {ctx['number']}".encode())


@contextmanager
def recorded_sql(app) -> Iterator[list[str]]:
    """Every statement the engine sends while open (an executemany or a multi-row INSERT batch counts once)."""
    engine = app.extensions["portal.db"].engine
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)


def two_paid_and(app, db, make_account, unmatched: int, first: int) -> tuple[bytes, list[Invoice]]:
    """A statement paying two new companies' invoices (its first and last line) around `unmatched` payment orders
    that name no invoice of ours."""
    invoices = []
    for _ in range(2):
        account = make_account(name="ООО «Ромашка»")
        give_requisites(db, account)
        invoices.append(issue(app, db, account))
    paying = [
        payment(f"{first + k}", i.amount, f"Оплата по счёту № {i.number}. Без НДС") for k, i in enumerate(invoices)
    ]
    others = [
        payment(f"{first + 10 + k}", 1000 + k, f"Оплата по договору поставки {k}, без НДС", payer_inn="500100732259")
        for k in range(unmatched)
    ]
    return statement(paying[0], *others, paying[1]), invoices


def test_an_import_costs_the_same_sql_for_20_lines_as_for_900(quick_render, app, db, make_account):
    # The first import of the database numbers its first documents (counters are created): not the one measured.
    warm, _ = two_paid_and(app, db, make_account, 3, 100)
    with app.app_context():
        import_statement(db, warm, file_name="0.txt", actor=None, now=LATER)
    counts = []
    for unmatched, first in ((20, 1000), (900, 5000)):
        data, invoices = two_paid_and(app, db, make_account, unmatched, first)
        with app.app_context(), recorded_sql(app) as sql:
            result = import_statement(db, data, file_name=f"{unmatched}.txt", actor=None, now=LATER)
        counts.append(len(sql))
        # What support sees is unchanged by the bulk path: both invoices paid, every other line listed with why.
        assert [line.doc_number for line in result.matched] == [str(first), str(first + 1)]
        assert len(result.unmatched) == unmatched
        lines = db.scalars(sa.select(StatementLine).where(StatementLine.import_id == result.import_id)).all()
        assert len(lines) == unmatched + 2
        listed = [line for line in lines if line.status == LineStatus.UNMATCHED.value]
        assert {line.reason for line in listed} == {
            "В назначении платежа нет номера счёта, а по ИНН и сумме счёт однозначно не найден"
        }
        assert [line.id for line in result.unmatched] == [line.id for line in listed]
        # File order is kept: the ids follow the lines of the statement.
        assert [line.doc_number for line in sorted(lines, key=lambda x: x.id)][0] == str(first)
        assert [line.doc_number for line in sorted(lines, key=lambda x: x.id)][-1] == str(first + 1)
        db.expire_all()
        assert {db.get(Invoice, i.id).status for i in invoices} == {"paid"}
        assert (
            db.scalar(sa.select(sa.func.count()).select_from(Upd).where(Upd.invoice_id.in_([i.id for i in invoices])))
            == 2
        )
    # 45 times the lines, the same statements: one look-up per 1000 identities, one INSERT per batch of lines.
    assert counts[1] == counts[0], counts


def test_a_reimport_finds_everything_recorded_and_writes_nothing(quick_render, app, db, make_account):
    data, _ = two_paid_and(app, db, make_account, 300, 100)
    with app.app_context():
        first = import_statement(db, data, file_name="a.txt", actor=None, now=LATER)
    assert (len(first.matched), len(first.unmatched)) == (2, 300)
    before = (
        db.scalar(sa.select(sa.func.count()).select_from(StatementLine)),
        db.scalar(sa.select(sa.func.count()).select_from(StatementImport)),
    )
    with app.app_context(), recorded_sql(app) as sql:
        again = import_statement(db, data, file_name="a.txt", actor=None, now=LATER)
    assert (len(again.matched), len(again.unmatched), again.duplicates, again.import_id) == (0, 0, 302, None)
    writes = [s for s in sql if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []
    # One chunked look-up of the 302 identities, and the transaction around it.
    assert len([s for s in sql if "statement_lines" in s]) == 1
    assert (
        db.scalar(sa.select(sa.func.count()).select_from(StatementLine)),
        db.scalar(sa.select(sa.func.count()).select_from(StatementImport)),
    ) == before
