"""Bank statements (1CClientBankExchange): sample files in each encoding, every way a file can break."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.payments.statement import (
    StatementError,
    build_statement,
    find_invoice_numbers,
    incoming_for,
    parse_amount,
    parse_statement,
)

SAMPLES = Path(__file__).parent / "samples"
OUR_ACCOUNT = "40702810938000000001"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


# --- the committed sample files -------------------------------------------------------------------


def test_windows_1251_statement_from_1c() -> None:
    statement = parse_statement(sample("statement_cp1251.txt"))
    assert statement.encoding == "cp1251"
    assert statement.format_version == "1.03"
    assert statement.sender == "Бухгалтерия предприятия, редакция 3.0"
    assert statement.recipient == ""
    assert (statement.created_date, statement.start_date, statement.end_date) == (
        date(2026, 11, 26),
        date(2026, 11, 25),
        date(2026, 11, 25),
    )
    assert statement.accounts == [OUR_ACCOUNT]
    assert statement.account_sections == [
        {
            "ДатаНачала": "25.11.2026",
            "ДатаКонца": "25.11.2026",
            "РасчСчет": OUR_ACCOUNT,
            "НачальныйОстаток": "100000.00",
            "ВсегоПоступило": "10454.50",
            "ВсегоСписано": "1500.00",
            "КонечныйОстаток": "108954.50",
        }
    ]
    assert [d.number for d in statement.documents] == ["512", "77", "1001"]
    assert [d.line_number for d in statement.documents] == [21, 52, 67]
    assert [d.amount_kopecks for d in statement.documents] == [846_450, 199_050, 150_000]

    first = statement.documents[0]
    assert first.kind == "Платежное поручение"
    assert first.date == date(2026, 11, 25)
    assert first.payer_name == 'ООО "РОМАШКА"'  # from Плательщик1, not "ИНН … ООО …"
    assert (first.payer_inn, first.payer_kpp, first.payer_account) == (
        "7728168971",
        "772801001",
        "40702810400000012345",
    )
    assert (first.payee_name, first.payee_inn, first.payee_account) == (
        'ООО "ТАРИФ"',
        "7707083893",
        OUR_ACCOUNT,
    )
    assert first.purpose == (
        "Оплата по счету №2026-000123 от 20.11.2026 за лицензию, тариф «12 пользователей», 9 мес. Без налога (НДС)"
    )
    assert first.received_date == date(2026, 11, 25)
    assert first.written_off_date == date(2026, 11, 25)
    assert first.raw["ПолучательБИК"] == "044525225"
    assert first.raw["ВидПлатежа"] == ""
    assert len(first.raw) == 29  # lines 22–50

    second = statement.documents[1]
    assert second.payer_name == "Индивидуальный предприниматель Ёлкина Юлия Эдуардовна"
    assert second.payer_kpp == ""
    assert second.date == date(2026, 11, 24)

    assert statement.documents[2].received_date is None


def test_dos_866_statement_with_a_bank_order() -> None:
    statement = parse_statement(sample("statement_cp866.txt"))
    assert statement.encoding == "cp866"
    assert statement.format_version == "1.02"
    assert statement.recipient == "Бухгалтерия"
    payment, interest = statement.documents
    assert payment.payer_name == 'ЗАО "Щука и партнёры" № 1'
    assert payment.amount_kopecks == 2_999_000
    assert payment.purpose == 'Счёт 2026-000200. Лицензия "1000 пользователей". Без НДС'
    assert (interest.kind, interest.amount_kopecks, interest.line_number) == ("Банковский ордер", 50, 23)


def test_utf8_statement_with_bom_even_though_it_says_windows() -> None:
    data = sample("statement_utf8_bom.txt")
    assert data.startswith(b"\xef\xbb\xbf")
    statement = parse_statement(data)
    assert statement.encoding == "utf-8"
    (document,) = statement.documents
    assert document.payer_name == "ООО «Ёж» — «Ъ»"
    assert document.purpose == "по счёту N2026-000301 от 30.11.2026 € ✓"
    assert document.amount_kopecks == 499_000
    assert parse_statement(data[3:]) == statement


def test_same_content_in_every_encoding_parses_the_same() -> None:
    text = sample("statement_cp866.txt").decode("cp866")
    via_dos = parse_statement(text.encode("cp866"))
    via_windows = parse_statement(text.replace("Кодировка=DOS", "Кодировка=Windows").encode("cp1251"))
    via_utf8 = parse_statement(text.encode("utf-8"))
    assert via_dos.documents == via_windows.documents == via_utf8.documents


def test_lf_line_ends_and_trailing_dos_eof_mark_are_accepted() -> None:
    data = sample("statement_cp1251.txt").replace(b"\r\n", b"\n") + b"\x1a"
    assert len(parse_statement(data).documents) == 3


def test_windows_file_that_wrongly_declares_dos_is_read_by_what_it_is() -> None:
    data = sample("statement_cp1251.txt").replace(b"=Windows", b"=DOS")
    statement = parse_statement(data)
    assert statement.encoding == "cp1251"
    assert statement.documents[1].payer_name == "Индивидуальный предприниматель Ёлкина Юлия Эдуардовна"


def test_incoming_payments_are_those_credited_to_our_account() -> None:
    statement = parse_statement(sample("statement_cp1251.txt"))
    assert [d.number for d in incoming_for(statement, OUR_ACCOUNT)] == ["512", "77"]
    assert [d.number for d in incoming_for(statement, "4070 2810 9380 0000 0001")] == ["512", "77"]
    assert [d.number for d in incoming_for(statement, "40702810700000000555")] == ["1001"]
    assert incoming_for(statement, "40702810000000000000") == []


def test_invoice_numbers_in_the_sample_purposes() -> None:
    statement = parse_statement(sample("statement_cp1251.txt"))
    assert [find_invoice_numbers(d.purpose) for d in statement.documents] == [
        ["2026-000123"],
        ["2026-000045", "2026-000046"],
        [],
    ]


# --- malformed files: the error names the line to look at ------------------------------------------

GOOD_DOCUMENT = [
    "СекцияДокумент=Платежное поручение",  # line 5 in the files below
    "Номер=1",
    "Дата=25.11.2026",
    "Сумма=990.00",
    "ПолучательСчет=40702810938000000001",
    "КонецДокумента",
]


def statement_lines(*lines: str, encoding: str = "cp1251") -> bytes:
    return "\r\n".join(lines).encode(encoding)


def with_document(*document: str, tail: tuple[str, ...] = ("КонецФайла",), encoding: str = "cp1251") -> bytes:
    head = (
        "1CClientBankExchange",
        "ВерсияФормата=1.03",
        "Кодировка=Windows",
        "РасчСчет=40702810938000000001",
    )
    return statement_lines(*head, *document, *tail, encoding=encoding)


def test_the_well_formed_base_case_parses() -> None:
    (document,) = parse_statement(with_document(*GOOD_DOCUMENT)).documents
    assert (document.line_number, document.amount_kopecks) == (5, 99_000)


def replaced(index: int, line: str) -> list[str]:
    lines = list(GOOD_DOCUMENT)
    lines[index] = line
    return lines


MALFORMED = [
    ("empty file", b"", 1, "первая строка должна быть «1CClientBankExchange»"),
    ("not a statement", "Выписка\r\nКодировка=Windows\r\n".encode("cp1251"), 1, "1CClientBankExchange"),
    (
        "no encoding line",
        statement_lines("1CClientBankExchange", "ВерсияФормата=1.03", "КонецФайла"),
        1,
        "нет строки «Кодировка=»",
    ),
    (
        "no encoding line, 8-bit text",
        statement_lines("1CClientBankExchange", "Отправитель=Банк", "КонецФайла"),
        1,
        "нет строки «Кодировка=»",
    ),
    (
        "unknown encoding",
        statement_lines("1CClientBankExchange", "ВерсияФормата=1.03", "Кодировка=KOI8-R", "КонецФайла"),
        3,
        "Неизвестная кодировка «KOI8-R»",
    ),
    (
        "unknown encoding in a utf-8 file",
        statement_lines("1CClientBankExchange", "Кодировка=Mac", "КонецФайла", encoding="utf-8"),
        2,
        "Неизвестная кодировка «Mac»",
    ),
    (
        "byte that windows-1251 does not have",
        with_document(*GOOD_DOCUMENT[:3]) + b"\r\n\x98\r\n",
        9,
        "не читается в кодировке Windows",
    ),
    (
        "document not closed before the next one",
        with_document(*GOOD_DOCUMENT[:-1], *GOOD_DOCUMENT),
        5,
        "Секция «Платежное поручение» не закрыта строкой «КонецДокумента»",
    ),
    (
        "document not closed before the end of the file",
        with_document(*GOOD_DOCUMENT[:-1]),
        5,
        "не закрыта строкой «КонецДокумента»",
    ),
    (
        "document cut off",
        with_document(*GOOD_DOCUMENT[:-2], tail=()),
        5,
        "не закрыта строкой «КонецДокумента»",
    ),
    (
        "no end-of-file line",
        with_document(*GOOD_DOCUMENT, tail=("", "")),
        10,
        "Файл не завершён строкой «КонецФайла»",
    ),
    (
        "account section not closed",
        with_document("СекцияРасчСчет", "НачальныйОстаток=0.00", *GOOD_DOCUMENT),
        5,
        "Секция «СекцияРасчСчет» не закрыта строкой «КонецРасчСчет»",
    ),
    (
        "end of a document closes an account section",
        with_document("СекцияРасчСчет", "НачальныйОстаток=0.00", "КонецДокумента"),
        7,
        "закрывает не ту секцию",
    ),
    ("end of a document without its start", with_document("КонецДокумента"), 5, "без начала секции"),
    (
        "bad date",
        with_document(*replaced(2, "Дата=31.02.2026")),
        7,
        "Неверная дата в поле «Дата»: «31.02.2026»",
    ),
    ("ISO date", with_document(*replaced(2, "Дата=2026-11-25")), 7, "нужен формат ДД.ММ.ГГГГ"),
    ("short date", with_document(*replaced(2, "Дата=1.12.2026")), 7, "Неверная дата"),
    ("no date", with_document(*replaced(2, "Дата=")), 5, "В документе нет поля «Дата»"),
    (
        "bad received date",
        with_document(*GOOD_DOCUMENT[:-1], "ДатаПоступило=25/11/2026", "КонецДокумента"),
        10,
        "Неверная дата в поле «ДатаПоступило»",
    ),
    (
        "bad header date",
        with_document(*GOOD_DOCUMENT, tail=("КонецФайла",)).replace(
            "РасчСчет=".encode("cp1251"), "ДатаНачала=00.11.2026\r\nРасчСчет=".encode("cp1251")
        ),
        4,
        "Неверная дата в поле «ДатаНачала»",
    ),
    ("negative amount", with_document(*replaced(3, "Сумма=-990.00")), 8, "Сумма не может быть отрицательной"),
    (
        "amount with three decimals",
        with_document(*replaced(3, "Сумма=8464.505")),
        8,
        "Неверная сумма «8464.505»",
    ),
    ("amount with letters", with_document(*replaced(3, "Сумма=990 руб.")), 8, "Неверная сумма"),
    ("amount with a point only", with_document(*replaced(3, "Сумма=990.")), 8, "Неверная сумма"),
    ("amount in exponent form", with_document(*replaced(3, "Сумма=1e3")), 8, "Неверная сумма"),
    ("no amount", with_document(*replaced(3, "Сумма=")), 5, "В документе нет поля «Сумма»"),
    (
        "line that is not Key=Value in a document",
        with_document(*replaced(4, "получатель наш")),
        9,
        "Ожидалась строка вида Ключ=Значение",
    ),
    ("key missing before =", with_document(*replaced(4, "=40702810938000000001")), 9, "Ключ=Значение"),
    (
        "line that is not Key=Value in an account section",
        with_document("СекцияРасчСчет", "Остаток 0", "КонецРасчСчет"),
        6,
        "Ключ=Значение",
    ),
    ("line that is not Key=Value in the header", with_document("Выписка за ноябрь"), 5, "Ключ=Значение"),
    (
        "the same field twice with different values",
        with_document(*GOOD_DOCUMENT[:-1], "Сумма=9900.00", "КонецДокумента"),
        10,
        "Поле «Сумма» повторяется",
    ),
    (
        "data after the end of the file",
        with_document(*GOOD_DOCUMENT, tail=("КонецФайла", "", *GOOD_DOCUMENT)),
        13,
        "После строки «КонецФайла» (строка 11) есть данные",
    ),
]


@pytest.mark.parametrize(
    ("data", "line_number", "message"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_file_is_refused_with_line_and_reason(data: bytes, line_number: int, message: str) -> None:
    with pytest.raises(StatementError) as caught:
        parse_statement(data)
    assert message in caught.value.message
    assert caught.value.line_number == line_number
    assert str(caught.value).startswith(f"Строка {line_number}: ")


CONTROL_CHARACTERS = [
    ("NUL in the purpose", "НазначениеПлатежа=Оплата по счёту № 2026-000001\x00", "U+0000"),
    ("bell in the payer's name", "Плательщик1=ООО \x07Ромашка", "U+0007"),
    ("escape in the payer's ИНН", "ПлательщикИНН=7728146350\x1b[2J", "U+001B"),
    ("vertical tab inside the purpose", "НазначениеПлатежа=Оплата\x0bпо счёту", "U+000B"),
    ("DEL in the purpose", "НазначениеПлатежа=Оплата\x7f", "U+007F"),
    ("C1 control in a UTF-8 purpose", "НазначениеПлатежа=Оплата\x85по счёту", "U+0085"),
    ("tab in the purpose", "НазначениеПлатежа=Оплата\tпо счёту", "U+0009"),
]


@pytest.mark.parametrize(
    ("line", "code"),
    [case[1:] for case in CONTROL_CHARACTERS],
    ids=[case[0] for case in CONTROL_CHARACTERS],
)
def test_a_control_character_in_a_value_refuses_the_file_naming_the_line(line: str, code: str) -> None:
    # Issue #14: a NUL in a purpose reached the database (PostgreSQL refuses it: a 500) and would reach documents.
    data = with_document(*GOOD_DOCUMENT[:-1], line, GOOD_DOCUMENT[-1], encoding="utf-8")
    with pytest.raises(StatementError) as caught:
        parse_statement(data)
    assert caught.value.line_number == 10
    assert f"управляющий символ {code}" in caught.value.message
    assert caught.value.message.startswith(f"В поле «{line.partition('=')[0]}»")


def test_a_control_character_is_refused_in_the_header_too() -> None:
    data = with_document(*GOOD_DOCUMENT, tail=("Отправитель=Банк\x00", "КонецФайла"))
    with pytest.raises(StatementError) as caught:
        parse_statement(data)
    assert (caught.value.line_number, caught.value.message[:20]) == (11, "В поле «Отправитель»")


def test_one_bad_document_among_good_ones_refuses_the_whole_file() -> None:
    data = with_document(*GOOD_DOCUMENT, *GOOD_DOCUMENT, *replaced(3, "Сумма=abc"), *GOOD_DOCUMENT)
    with pytest.raises(StatementError) as caught:
        parse_statement(data)
    assert caught.value.line_number == 20


def test_a_huge_garbage_value_is_cut_in_the_message() -> None:
    with pytest.raises(StatementError) as caught:
        parse_statement(with_document(*replaced(3, "Сумма=" + "9" * 5000 + "x")))
    assert caught.value.line_number == 8
    assert caught.value.message.startswith("Неверная сумма «" + "9" * 39 + "…»")
    assert len(caught.value.message) < 120


def test_statement_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="1CClientBankExchange"):
        parse_statement(b"%PDF-1.7")


# --- amounts ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kopecks"),
    [
        ("8464.50", 846_450),
        ("8464.5", 846_450),
        ("8464", 846_400),
        ("8464,50", 846_450),
        ("8464,05", 846_405),
        ("0.01", 1),
        ("0.1", 10),
        ("0", 0),
        (" 990.00 ", 99_000),
        ("000990.00", 99_000),
        ("0.29", 29),  # float(0.29) * 100 is 28.999999999999996
        ("1.15", 115),  # and 1.15 * 100 is 114.99999999999999
        ("99999999999999999.99", 9_999_999_999_999_999_999),
    ],
)
def test_amount_is_parsed_to_exact_kopecks(text: str, kopecks: int) -> None:
    assert parse_amount(text) == kopecks


@pytest.mark.parametrize("text", ["", "-1", "+1", "1.", ".5", "1.234", "1 000.00", "1,000.00", "１０", "NaN"])
def test_malformed_amount(text: str) -> None:
    with pytest.raises(ValueError):
        parse_amount(text)


def test_document_amount_in_the_file() -> None:
    for written, kopecks in [("8464.5", 846_450), ("8464,50", 846_450), ("8464", 846_400), ("0.07", 7)]:
        (document,) = parse_statement(with_document(*replaced(3, f"Сумма={written}"))).documents
        assert document.amount_kopecks == kopecks


# --- invoice numbers in the purpose -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("purpose", "numbers"),
    [
        ("Оплата по счету №2026-000123 от 25.11.2026. Без НДС", ["2026-000123"]),
        ("Оплата по счёту № 2026-123", ["2026-000123"]),
        ("Оплата сч.2026-000123", ["2026-000123"]),
        ("Оплата сч. 2026-7, лицензия", ["2026-000007"]),
        ("по счету №2026-000123 от 25.11.2026", ["2026-000123"]),
        ("СЧЁТ № 2026-000124 ОТ 25.11.2026", ["2026-000124"]),
        ("Счет N 2026-45 и счет N2026-46", ["2026-000045", "2026-000046"]),
        ("Счёт-оферта № 2026-12", ["2026-000012"]),
        ("счет2026-000125", ["2026-000125"]),
        ("Оплата 2026-000123 за лицензию", ["2026-000123"]),
        ("Оплата 2026–000123 (тире)", ["2026-000123"]),
        ("Оплата по сч 2026-000002, 2026-000001", ["2026-000002", "2026-000001"]),
        ("2026-000123; повторно счёт №2026-123", ["2026-000123"]),
        ("Оплата 2026-123 за лицензию", []),  # a short number without "счёт"/"№" may be anything
        ("Оплата по договору от 2026-11-25", []),
        ("Счёт № 2026-11-25", []),
        ("ИНН 7707083893, р/с 40702810938000000001", []),
        ("Оплата по счету от 25.11.2026", []),
        ("Счёт № 2026-1234567", []),
        ("Счёт № 2026-000000", []),
        ("", []),
    ],
)
def test_invoice_numbers_are_found_and_normalised(purpose: str, numbers: list[str]) -> None:
    assert find_invoice_numbers(purpose) == numbers


# --- writing files ----------------------------------------------------------------------------------


def test_built_statement_reads_back() -> None:
    data = build_statement(
        {
            "Отправитель": "Тест",
            "ДатаНачала": date(2026, 11, 1),
            "РасчСчет": [OUR_ACCOUNT, "40702810000000000009"],
        },
        [
            {"Номер": "1", "Дата": date(2026, 11, 2), "Сумма": 846_450, "ПолучательСчет": OUR_ACCOUNT},
            {
                "СекцияДокумент": "Банковский ордер",
                "Номер": "2",
                "Дата": "03.11.2026",
                "Сумма": "0.5",
                "НазначениеПлатежа": "Проценты «на остаток»",
            },
        ],
        "UTF-8",
        account_sections=[{"РасчСчет": OUR_ACCOUNT, "НачальныйОстаток": 100}],
    )
    assert data.startswith("1CClientBankExchange\r\nВерсияФормата=1.03\r\nКодировка=UTF-8\r\n".encode())
    statement = parse_statement(data)
    assert statement.accounts == [OUR_ACCOUNT, "40702810000000000009"]
    assert statement.start_date == date(2026, 11, 1)
    assert statement.account_sections == [{"РасчСчет": OUR_ACCOUNT, "НачальныйОстаток": "1.00"}]
    first, second = statement.documents
    assert (first.amount_kopecks, first.raw["Сумма"], first.date) == (846_450, "8464.50", date(2026, 11, 2))
    assert (second.kind, second.amount_kopecks, second.purpose) == (
        "Банковский ордер",
        50,
        "Проценты «на остаток»",
    )


@pytest.mark.parametrize(("encoding", "codec"), [("Windows", "cp1251"), ("DOS", "cp866"), ("cp1251", "cp1251")])
def test_built_statement_in_8_bit_encodings(encoding: str, codec: str) -> None:
    document = {"Номер": "5", "Дата": "01.12.2026", "Сумма": 1, "Плательщик": "ИП Щукин Ёж"}
    data = build_statement({}, [document] * 3, encoding)
    assert data.decode(codec).splitlines()[2] == f"Кодировка={'DOS' if codec == 'cp866' else 'Windows'}"
    statement = parse_statement(data)
    assert statement.encoding == codec
    assert [d.payer_name for d in statement.documents] == ["ИП Щукин Ёж"] * 3
    assert [d.line_number for d in statement.documents] == [4, 10, 16]


def test_build_statement_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError):
        build_statement({}, [], "KOI8-R")
    with pytest.raises(ValueError):
        build_statement({}, [{"НазначениеПлатежа": "две\nстроки"}], "Windows")
    with pytest.raises(ValueError):
        build_statement({}, [{"Сумма": -1}], "Windows")
    with pytest.raises(ValueError):
        build_statement({}, [{"Плательщик": "ООО «Ромашка»"}], "DOS")  # cp866 has no «»


# --- properties: any input is either a statement or a StatementError --------------------------------

TOKENS = [
    "1CClientBankExchange",
    "Кодировка=Windows",
    "Кодировка=DOS",
    "Кодировка=UTF-8",
    "Кодировка=",
    "СекцияДокумент=Платежное поручение",
    "СекцияДокумент",
    "КонецДокумента",
    "СекцияРасчСчет",
    "КонецРасчСчет",
    "КонецФайла",
    "Дата=25.11.2026",
    "Дата=29.02.2026",
    "ДатаНачала=01.01.0000",
    "ДатаПоступило=",
    "Сумма=8464.50",
    "Сумма=-1",
    "Сумма=" + "9" * 5000,
    "Сумма=",
    "Номер=1",
    "=",
    "",
    "\x1a",
    "ПолучательСчет=40702810938000000001",
]


def _parse_or_statement_error(data: bytes) -> None:
    try:
        statement = parse_statement(data)
    except StatementError as error:
        assert error.line_number >= 1
        assert error.message
    else:
        assert all(d.amount_kopecks >= 0 for d in statement.documents)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_raise_statement_error(data: bytes) -> None:
    _parse_or_statement_error(data)
    _parse_or_statement_error(b"1CClientBankExchange\r\n" + data)
    _parse_or_statement_error("1CClientBankExchange\r\nКодировка=Windows\r\n".encode("cp1251") + data)


DECLARED = {"cp1251": "Windows", "cp866": "DOS", "utf-8": "Windows", "utf-8-sig": "UTF-8"}


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=30)), max_size=25),
    codec=st.sampled_from(sorted(DECLARED)),
    newline=st.sampled_from(["\r\n", "\n", "\r"]),
)
def test_arbitrary_lines_parse_or_raise_statement_error(lines: list[str], codec: str, newline: str) -> None:
    text = newline.join(["1CClientBankExchange", f"Кодировка={DECLARED[codec]}", *lines])
    _parse_or_statement_error(text.encode(codec, errors="replace"))


@settings(max_examples=300, deadline=None)
@given(
    count=st.integers(min_value=0, max_value=4),
    encoding=st.sampled_from(["Windows", "DOS", "UTF-8"]),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["delete", "duplicate", "replace", "insert", "truncate", "byte"]),
            st.integers(min_value=0, max_value=10**6),
            st.one_of(st.sampled_from(TOKENS), st.text(max_size=20)),
        ),
        max_size=3,
    ),
)
def test_damaged_statements_parse_or_raise_statement_error(
    count: int, encoding: str, edits: list[tuple[str, int, str]]
) -> None:
    # Start from a valid file and break it a little, so that the parser is exercised deep inside sections.
    document = {"Номер": "7", "Дата": "25.11.2026", "Сумма": 99_000, "ПолучательСчет": OUR_ACCOUNT}
    data = build_statement({"ДатаНачала": "25.11.2026"}, [document] * count, encoding)
    codec = {"Windows": "cp1251", "DOS": "cp866", "UTF-8": "utf-8"}[encoding]
    for action, position, token in edits:
        lines = data.split(b"\r\n")
        index = position % len(lines)
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action in ("replace", "insert"):
            lines[index : index + (action == "replace")] = [token.encode(codec, errors="replace")]
        data = b"\r\n".join(lines)
        if action == "truncate":
            data = data[: position % (len(data) + 1)]
        elif action == "byte":
            offset = position % (len(data) + 1)
            data = data[:offset] + bytes([position % 256]) + data[offset:]
    _parse_or_statement_error(data)


# Characters both 8-bit encodings have, so one strategy serves Windows, DOS and UTF-8 files.
field_text = st.text(alphabet="abcXYZ 0123456789.,;:!?-=/\\\"'()#№%АБВЁЖЩЪЯабвёжщъя", max_size=40).map(str.strip)


@settings(max_examples=100, deadline=None)
@given(
    documents=st.lists(
        st.fixed_dictionaries(
            {
                "Номер": st.from_regex(r"[0-9]{1,6}", fullmatch=True),
                "Дата": st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
                "Сумма": st.integers(min_value=0, max_value=10**15),
                "Плательщик": field_text,
                "ПолучательСчет": st.sampled_from([OUR_ACCOUNT, "40702810000000000009"]),
                "НазначениеПлатежа": field_text,
            }
        ),
        max_size=5,
    ),
    encoding=st.sampled_from(["Windows", "DOS", "UTF-8"]),
)
def test_what_build_statement_writes_parse_statement_reads_back(
    documents: list[dict[str, object]], encoding: str
) -> None:
    statement = parse_statement(build_statement({"Отправитель": "Банк"}, documents, encoding))
    assert [
        (d.number, d.date, d.amount_kopecks, d.payer_name, d.payee_account, d.purpose) for d in statement.documents
    ] == [
        (d["Номер"], d["Дата"], d["Сумма"], d["Плательщик"], d["ПолучательСчет"], d["НазначениеПлатежа"])
        for d in documents
    ]
    assert len(incoming_for(statement, OUR_ACCOUNT)) == sum(d["ПолучательСчет"] == OUR_ACCOUNT for d in documents)


# --- statements as several banks export them (issue #21) -----------------------------------------------
# Anonymised, written from the format's description and the banks' export conventions: each file keeps its
# bank's spelling of "Кодировка=", line ends and which optional fields it leaves out (samples/banks/README.md).

BANKS = SAMPLES / "banks"


@pytest.mark.parametrize(
    ("name", "codec", "number", "kopecks", "invoices"),
    [
        ("raiffeisen_windows-1251.txt", "cp1251", "3321", 846_450, ["2026-000123"]),
        ("onec_windows.txt", "cp1251", "15", 1_990_000, ["2026-000077"]),
        ("bank_cp1251_upper.txt", "cp1251", "904", 594_000, ["2026-000045"]),
        ("bank_866.txt", "cp866", "1207", 594_000, ["2026-000001"]),
        ("bank_dos.txt", "cp866", "88", 99_000, ["2026-000002"]),
        ("bank_utf-8_lf.txt", "utf-8", "7001", 2_999_000, ["2026-000300"]),
    ],
)
def test_statements_of_several_banks_are_read(
    name: str, codec: str, number: str, kopecks: int, invoices: list[str]
) -> None:
    statement = parse_statement((BANKS / name).read_bytes())
    assert statement.encoding == codec
    (payment,) = incoming_for(statement, OUR_ACCOUNT)
    assert (payment.number, payment.amount_kopecks) == (number, kopecks)
    assert payment.payee_inn == "7707083893"
    assert find_invoice_numbers(payment.purpose) == invoices
    assert payment.payer_name and not payment.payer_name.startswith("ИНН")  # the clean name of Плательщик1


@pytest.mark.parametrize(
    ("declared", "codec"),
    [
        (spelling, codec)
        for codec, spellings in {
            "cp1251": ["Windows", "windows-1251", "Windows-1251", "WINDOWS-1251", "windows1251", "cp1251", "CP-1251"],
            "cp866": ["DOS", "dos", "866", "cp866", "CP866", "IBM866"],
            "utf-8": ["UTF-8", "utf-8", "utf8", "UTF8"],
        }.items()
        for spelling in spellings
    ],
)
def test_every_spelling_of_the_encoding_banks_use_is_read(declared: str, codec: str) -> None:
    text = "\r\n".join(
        ["1CClientBankExchange", "ВерсияФормата=1.03", f"Кодировка= {declared} ", *GOOD_DOCUMENT, "КонецФайла"]
    )
    text = text.replace("Номер=1", "Номер=Щ-1")  # one letter that only the right codec reads back
    statement = parse_statement(text.encode(codec))
    assert statement.encoding == codec
    assert statement.documents[0].number == "Щ-1"


def test_an_unknown_encoding_is_refused_with_the_list_of_accepted_ones() -> None:
    data = statement_lines("1CClientBankExchange", "ВерсияФормата=1.03", "Кодировка=KOI8-R", "КонецФайла")
    with pytest.raises(StatementError) as error:
        parse_statement(data)
    assert error.value.message == (
        "Неизвестная кодировка «KOI8-R»: поддерживаются Windows (windows-1251, cp1251), DOS (cp866, 866) и UTF-8"
    )
