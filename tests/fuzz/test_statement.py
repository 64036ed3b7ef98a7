"""Bank statements: the parser takes any bytes (a statement or a StatementError with the line, nothing else), keeps
what it is given, and the staff upload refuses a broken file whole."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from portal.documents.models import Invoice
from portal.payments.statement import StatementError, build_statement, parse_statement
from tests.conftest import RecordingSms, csrf_token
from tests.fuzz.conftest import FUZZ, hostile_text
from tests.security.conftest import changed_tables, snapshot
from tests.security.world import World

SELLER = "40702810303800012345"
HEADER = {
    "Отправитель": "Бухгалтерия предприятия, редакция 3.0",
    "Получатель": "",
    "ДатаСоздания": date(2026, 11, 27),
    "ДатаНачала": date(2026, 11, 26),
    "ДатаКонца": date(2026, 11, 26),
    "РасчСчет": SELLER,
}


def _doc(number: str, amount: int, purpose: str, day: date = date(2026, 11, 26)) -> dict[str, Any]:
    return {
        "Номер": number,
        "Дата": day,
        "Сумма": amount,
        "ПлательщикСчет": "40702810800000012345",
        "ДатаСписано": day,
        "Плательщик": 'ИНН 7728146350 ООО "Ромашка"',
        "ПлательщикИНН": "7728146350",
        "Плательщик1": 'ООО "Ромашка"',
        "ПолучательСчет": SELLER,
        "ДатаПоступило": day,
        "Получатель": 'ООО "Мессенджер Плюс"',
        "ПолучательИНН": "7712345671",
        "ВидОплаты": "01",
        "Очередность": 5,
        "НазначениеПлатежа": purpose,
    }


def _parse_or_refuse(data: bytes) -> Any:
    """The parser's contract: a statement, or a StatementError that names a line of the file and what is wrong."""
    try:
        return parse_statement(data)
    except StatementError as exc:
        assert exc.line_number >= 1 and exc.message.strip(), exc
        assert exc.line_number <= data.count(b"\n") + data.count(b"\r") + 2, (exc.line_number, exc)
        return None


@FUZZ
@given(data=st.binary(max_size=2000))
def test_any_bytes_are_a_statement_or_a_refusal_with_the_line(data: bytes) -> None:
    _parse_or_refuse(data)


@FUZZ
@given(data=st.binary(max_size=200))
def test_garbage_after_a_real_header_is_refused_with_the_line(data: bytes) -> None:
    _parse_or_refuse(b"1CClientBankExchange\r\n\xc2\xe5\xf0\xf1\xe8\xff\xd4\xee\xf0\xec\xe0\xf2\xe0=1.03\r\n" + data)


plain_text = st.text(
    alphabet=st.characters(codec="cp1251", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=120
).map(str.strip)


@FUZZ
@given(
    rows=st.lists(
        st.tuples(st.integers(min_value=1, max_value=999999).map(str), st.integers(0, 10**13), plain_text),
        min_size=1,
        max_size=5,
    ),
    encoding=st.sampled_from(["Windows", "DOS", "UTF-8"]),
)
def test_what_is_written_is_read_back(rows: list[tuple[str, int, str]], encoding: str) -> None:
    """Any amount to the kopeck and any purpose text the encoding can hold survive the file."""
    if encoding == "DOS":
        # A character DOS cannot hold is left out, which may leave a space at the end: stripped again, as every
        # generated text is (a statement's lines carry no trailing spaces; the reader strips them).
        rows = [(n, a, p.encode("cp866", "ignore").decode("cp866").strip()) for n, a, p in rows]
    statement = parse_statement(build_statement(HEADER, [_doc(n, a, p) for n, a, p in rows], encoding))
    assert [(d.number, d.amount_kopecks, d.purpose) for d in statement.documents] == rows


def mutations() -> st.SearchStrategy[Any]:
    return st.lists(
        st.tuples(
            st.sampled_from(["drop", "duplicate", "swap", "value", "truncate", "insert"]),
            st.integers(0, 10_000),
            hostile_text(),
        ),
        min_size=1,
        max_size=4,
    )


def mutate(data: bytes, ops: list[tuple[str, int, str]]) -> bytes:
    lines = data.split(b"\r\n")
    for op, at, text in ops:
        i = at % len(lines)
        if op == "drop":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = (at * 7 + 3) % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "value":
            key = lines[i].split(b"=", 1)[0]
            lines[i] = key + b"=" + text.encode("cp1251", "replace")
        elif op == "truncate":
            joined = b"\r\n".join(lines)
            lines = joined[: at % (len(joined) + 1)].split(b"\r\n")
        else:
            lines.insert(i, text.encode("utf-8"))
        if not lines:
            lines = [b""]
    return b"\r\n".join(lines)


VALID = build_statement(HEADER, [_doc("1", 846450, "Оплата по счёту № 2026-000001"), _doc("2", 100, "x")], "Windows")


@FUZZ
@given(ops=mutations())
def test_a_damaged_statement_is_read_whole_or_refused_whole(ops: list[tuple[str, int, str]]) -> None:
    statement = _parse_or_refuse(mutate(VALID, ops))
    if statement is not None:
        for doc in statement.documents:
            assert isinstance(doc.amount_kopecks, int) and doc.amount_kopecks >= 0
            assert isinstance(doc.date, date)


def test_the_staff_upload_refuses_a_damaged_statement_whole(world: World, module_sms: RecordingSms) -> None:
    client = world.client_as("staff", module_sms)
    token = csrf_token(client, "/documents/statements/import")
    with world.app.extensions["portal.db"].session() as db:
        invoice = db.get(Invoice, world.own.ids["invoice_id"])
        paying = build_statement(
            HEADER, [_doc("512", invoice.amount, f"Оплата по счёту № {invoice.number}. Без НДС")], "Windows"
        )

    refused = []

    @FUZZ
    @given(ops=mutations())
    def upload(ops: list[tuple[str, int, str]]) -> None:
        data = mutate(paying, ops)
        try:
            parse_statement(data)
            return  # still a good statement: importing it is not bad input
        except StatementError:
            pass
        before = snapshot(world.app)
        resp = client.post(
            "/documents/statements/import",
            data={"csrf_token": token, "statement": (io.BytesIO(data), "выписка.txt")},
            content_type="multipart/form-data",
        )
        body = resp.get_data(as_text=True)
        resp.close()
        assert resp.status_code == 400, resp.status_code
        assert "Файл не принят, ничего не загружено" in body and "Строка " in body
        assert changed_tables(before, snapshot(world.app)) == {}
        refused.append(ops)

    upload()
    assert refused, "no damaged file reached the upload: the harness tested nothing"
    with world.app.extensions["portal.db"].session() as db:
        assert db.scalar(sa.select(Invoice.status).where(Invoice.id == world.own.ids["invoice_id"])) == "issued"
