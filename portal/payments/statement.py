"""Bank statements in the 1CClientBankExchange format (1.02/1.03): parsing, payment matching, test files."""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

__all__ = [
    "PaymentOrder",
    "Statement",
    "StatementError",
    "build_statement",
    "find_invoice_numbers",
    "incoming_for",
    "parse_amount",
    "parse_statement",
]

FILE_MARKER = "1CClientBankExchange"
_END_FILE = "КонецФайла"
_ACCOUNT_START = "СекцияРасчСчет"
_ACCOUNT_END = "КонецРасчСчет"
_DOCUMENT_START = "СекцияДокумент"
_DOCUMENT_END = "КонецДокумента"
_ENCODING_KEY = "Кодировка"

# Value of "Кодировка=" → Python codec. The 1C description names only "Windows" and "DOS", but banks write the
# encoding as their own software calls it: "windows-1251" (Raiffeisenbank), "cp1251", "866", "IBM866", and some
# export UTF-8. Keys are compared case-insensitively with "-", "_" and spaces removed (_encoding_key).
_CODECS = {
    "windows": "cp1251",
    "windows1251": "cp1251",
    "win1251": "cp1251",
    "cp1251": "cp1251",
    "1251": "cp1251",
    "dos": "cp866",
    "cp866": "cp866",
    "ibm866": "cp866",
    "866": "cp866",
    "utf8": "utf-8",
}
_DECLARED = {"cp1251": "Windows", "cp866": "DOS", "utf-8": "UTF-8"}
_ACCEPTED = "Windows (windows-1251, cp1251), DOS (cp866, 866) и UTF-8"

# [0-9], not \d: \d also takes other scripts' digits ("１０"), which int() would happily accept.
_AMOUNT_RE = re.compile(r"([0-9]+)(?:[.,]([0-9]{1,2}))?")
_DATE_RE = re.compile(r"([0-9]{2})\.([0-9]{2})\.([0-9]{4})")
_MARKERS = frozenset({_DOCUMENT_START, _DOCUMENT_END, _ACCOUNT_START, _ACCOUNT_END, _END_FILE})
_MONEY_KEYS = {"Сумма", "НачальныйОстаток", "ВсегоПоступило", "ВсегоСписано", "КонечныйОстаток"}
# Control characters (C0 with tab, DEL, C1): none belongs in a bank's text export. Line breaks never reach a
# line (_split_lines splits at \n and drops the \r before it), so a \r left inside a line is one of these too.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The same characters anywhere in the decoded text, line breaks aside: one search over a clean 5 MB file instead of
# one per line (a stray \r is counted apart, see _has_control_characters: a pattern with an alternative is scanned
# three times slower). It finds everything the per-line check would (and may find more, e.g. a control character
# on a blank line or after КонецФайла), so only a file it flags is checked line by line.
_CONTROL_IN_TEXT_RE = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# The fast reader (_read_plain) takes a file only when none of its lines needs strip(): no control character, no
# whitespace but the plain space (this class adds the others str.strip() removes to the control characters), and no
# space at a line's ends or next to "=" (_SPACED_EDGES). Anything else is read line by line, as before.
_ODD_IN_TEXT_RE = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_SPACED_EDGES = ("\n ", " \n", " =", "= ")
_split_field = operator.methodcaller("split", "=", 1)  # a field line → [key, value], in C (no frame per line)


class StatementError(ValueError):
    """The file is not a well-formed statement; `message` (Russian) is shown to support staff."""

    def __init__(self, line_number: int, message: str) -> None:
        super().__init__(f"Строка {line_number}: {message}")
        self.line_number = line_number
        self.message = message


@dataclass(frozen=True)
class PaymentOrder:
    """One document of the statement (usually a платёжное поручение)."""

    kind: str
    number: str
    date: date
    amount_kopecks: int
    payer_name: str
    payer_inn: str
    payer_kpp: str
    payer_account: str
    payee_name: str
    payee_inn: str
    payee_account: str
    purpose: str
    received_date: date | None
    written_off_date: date | None
    raw: dict[str, str]
    line_number: int


@dataclass(frozen=True)
class Statement:
    format_version: str
    encoding: str
    sender: str
    recipient: str
    created_date: date | None
    start_date: date | None
    end_date: date | None
    accounts: list[str]
    header: dict[str, str]
    account_sections: list[dict[str, str]] = field(default_factory=list)
    documents: list[PaymentOrder] = field(default_factory=list)


def _shown(value: str, limit: int = 40) -> str:
    """A value quoted in an error message, cut so that a garbage line does not flood the page."""
    value = value.strip()
    return value if len(value) <= limit else value[: limit - 1] + "…"


def parse_amount(text: str) -> int:
    """Roubles as written in the file ("8464.50", "8464.5", "8464", "8464,50") → kopecks, exactly."""
    match = _AMOUNT_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(text)
    roubles, kopecks = match.groups()
    return int(roubles) * 100 + int((kopecks or "0").ljust(2, "0"))


@functools.lru_cache(maxsize=1024)
def _date_of(value: str) -> date:
    """The date a field holds; cached, as a statement's 10 000 documents share a few dates."""
    match = _DATE_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(value)
    day, month, year = (int(part) for part in match.groups())
    return date(year, month, day)


def _parse_date(value: str, line_number: int, key: str) -> date:
    try:
        return _date_of(value)
    except ValueError:
        raise StatementError(
            line_number, f"Неверная дата в поле «{key}»: «{_shown(value)}» (нужен формат ДД.ММ.ГГГГ)"
        ) from None


# --- decoding ---------------------------------------------------------------------------------------


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _encoding_key(value: str) -> str:
    return re.sub(r"[-_\s]", "", value).lower()


def _declared_codec(value: str, line_number: int) -> str:
    codec = _CODECS.get(_encoding_key(value))
    if codec is None:
        raise StatementError(line_number, f"Неизвестная кодировка «{_shown(value)}»: поддерживаются {_ACCEPTED}")
    return codec


def _find_encoding_line(lines: Sequence[str]) -> tuple[str, int] | None:
    for number, line in enumerate(lines, start=1):
        key, sep, value = line.partition("=")
        if sep and key.strip() == _ENCODING_KEY:
            return value, number
    return None


def _decode(data: bytes) -> tuple[str, str]:
    """The text and the codec it was read with: strict UTF-8 first, otherwise what "Кодировка=" says."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    if first.strip() != FILE_MARKER.encode():
        raise StatementError(1, f"Это не файл выписки: первая строка должна быть «{FILE_MARKER}»")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        found = _find_encoding_line(_split_lines(text))
        if found is None:
            raise StatementError(1, f"В заголовке нет строки «Кодировка=» ({_ACCEPTED})")
        value, number = found
        codec = _declared_codec(value, number)
        # An all-ASCII file is valid UTF-8 whatever it declares; report the declared encoding then.
        return text, codec if text.isascii() else "utf-8"

    # Not UTF-8: the key "Кодировка" itself is Cyrillic, so look for it as each 8-bit codec spells it.
    # The declared value must be a known one, but the text is read with the codec whose spelling of the
    # key matched: a cp1251 file that wrongly says "DOS" is still read correctly.
    spellings = {_ENCODING_KEY.encode(codec): codec for codec in ("cp1251", "cp866")}
    for number, raw_line in enumerate(_byte_lines(data), start=1):
        key, sep, value = raw_line.partition(b"=")
        codec = spellings.get(key.strip()) if sep else None
        if codec is None:
            continue
        _declared_codec(value.decode("ascii", errors="replace"), number)
        try:
            return data.decode(codec), codec
        except UnicodeDecodeError as error:
            raise StatementError(
                _line_of(data, error.start), f"Файл не читается в кодировке {_DECLARED[codec]}"
            ) from None
    raise StatementError(1, f"В заголовке нет строки «Кодировка=» ({_ACCEPTED})")


def _byte_lines(data: bytes) -> Iterator[bytes]:
    """data.split(b"\n"), one line at a time: the encoding line is in the header, so a 5 MB file is not cut into
    170 000 pieces to find it."""
    start = 0
    while (end := data.find(b"\n", start)) >= 0:
        yield data[start:end]
        start = end + 1
    yield data[start:]


def _split_lines(text: str) -> list[str]:
    # Not str.splitlines(): it also breaks at \x0b, \x1c, \u2028…, which would shift line numbers. Each line loses
    # one \r before its \n (the replace does that for all of them at once), the last one its trailing \r.
    lines = text.replace("\r\n", "\n").split("\n")
    lines[-1] = lines[-1].removesuffix("\r")
    return lines


# --- parsing ----------------------------------------------------------------------------------------


def _key_value(line: str, number: int) -> tuple[str, str]:
    key, sep, value = line.partition("=")
    key = key.strip()
    if not sep or not key:
        raise StatementError(number, f"Ожидалась строка вида Ключ=Значение, а не «{_shown(line, 60)}»")
    return key, value.strip()


class _Section:
    def __init__(self, kind: str, start_line: int, title: str) -> None:
        self.kind = kind
        self.start_line = start_line
        self.title = title
        self.fields: dict[str, str] = {}
        self.lines: dict[str, int] = {}

    def add(self, key: str, value: str, number: int) -> None:
        if key in self.fields and self.fields[key] != value:
            raise StatementError(number, f"Поле «{key}» повторяется с другим значением")
        self.fields[key] = value
        self.lines.setdefault(key, number)

    def unclosed(self) -> StatementError:
        end = _DOCUMENT_END if self.kind == _DOCUMENT_START else _ACCOUNT_END
        name = self.title or self.kind
        return StatementError(self.start_line, f"Секция «{name}» не закрыта строкой «{end}»")


def _payment_order(section: _Section) -> PaymentOrder:
    raw = section.fields

    def required(key: str) -> tuple[str, int]:
        if not raw.get(key):
            raise StatementError(section.start_line, f"В документе нет поля «{key}»")
        return raw[key], section.lines[key]

    def optional_date(key: str) -> date | None:
        return _parse_date(raw[key], section.lines[key], key) if raw.get(key) else None

    amount_text, amount_line = required("Сумма")
    if amount_text.lstrip().startswith("-"):
        raise StatementError(amount_line, f"Сумма не может быть отрицательной: «{_shown(amount_text)}»")
    try:
        amount = parse_amount(amount_text)
    except ValueError:
        raise StatementError(
            amount_line,
            f"Неверная сумма «{_shown(amount_text)}»: нужны рубли с копейками через точку, например 8464.50",
        ) from None
    date_text, date_line = required("Дата")
    return _order_of(
        section.title,
        raw,
        amount,
        _parse_date(date_text, date_line, "Дата"),
        optional_date("ДатаПоступило"),
        optional_date("ДатаСписано"),
        section.start_line,
    )


def _order_of(
    kind: str,
    raw: dict[str, str],
    amount: int,
    day: date,
    received: date | None,
    written_off: date | None,
    line_number: int,
) -> PaymentOrder:
    """The document from its checked fields (shared by the line-by-line reader and the fast one)."""
    get = raw.get
    return PaymentOrder(
        kind=kind,
        number=get("Номер", ""),
        date=day,
        amount_kopecks=amount,
        # In 1.03 "Плательщик" may hold "ИНН … Name"; the clean name is then in "Плательщик1".
        payer_name=get("Плательщик1") or get("Плательщик", ""),
        payer_inn=get("ПлательщикИНН", ""),
        payer_kpp=get("ПлательщикКПП", ""),
        payer_account=get("ПлательщикСчет", "") or get("ПлательщикРасчСчет", ""),
        payee_name=get("Получатель1") or get("Получатель", ""),
        payee_inn=get("ПолучательИНН", ""),
        payee_account=get("ПолучательСчет", "") or get("ПолучательРасчСчет", ""),
        purpose=get("НазначениеПлатежа", ""),
        received_date=received,
        written_off_date=written_off,
        raw=raw,  # the section's own dict, which nothing else keeps
        line_number=line_number,
    )


def _refuse_control_characters(line: str, number: int) -> None:
    """Refuse the file at a line holding a control character (NUL, ESC, a stray CR, a tab…), naming the field.

    Refused rather than stripped: a statement is read whole or not at all, and a control character means the
    file was damaged or exported wrongly, so the rest of that value (a payer's name, the purpose matching reads
    invoice numbers from) cannot be trusted either; quietly cleaning it would record a payment under text the
    bank never sent. Every field is also kept verbatim (`raw`), so stripping only the named fields would still let
    a NUL reach PostgreSQL, which cannot store one in text. The tab is refused too: no bank writes one, and
    support can ask the bank for a fresh export of the named line's document.
    """
    found = _CONTROL_RE.search(line)
    if found is None:
        return
    key, sep, _ = line.partition("=")
    where = f"В поле «{_shown(key)}»" if sep and key.strip() else "В строке"
    raise StatementError(
        number,
        f"{where} управляющий символ U+{ord(found.group()):04X}: файл выписки повреждён или выгружен неверно — "
        "выгрузите выписку из банка заново",
    )


def _has_control_characters(text: str) -> bool:
    """Whether the text holds a control character other than a line break (\n, or \r before \n or at the end)."""
    if _CONTROL_IN_TEXT_RE.search(text) is not None:
        return True
    # Every \r before a \n is one "\r\n" (they cannot overlap); any other \r but a last one is stray.
    return text.count("\r") > text.count("\r\n") + text.endswith("\r")


def parse_statement(data: bytes) -> Statement:
    """Read a whole statement file, or raise StatementError; nothing is returned from a broken file."""
    text, codec = _decode(data)
    joined = text.replace("\r\n", "\n")
    lines = joined.split("\n")  # as _split_lines, whose one more step (a last \r) is done below
    if "\r" not in joined and _ODD_IN_TEXT_RE.search(joined) is None:
        # No control character, no stray \r, no whitespace but spaces, and none of those where strip() would cut.
        if not any(edge in joined for edge in _SPACED_EDGES) and not joined.endswith(" "):
            plain = _read_plain(lines, codec)
            if plain is not None:
                return plain
    lines[-1] = lines[-1].removesuffix("\r")
    check_controls = _has_control_characters(text)
    header: dict[str, str] = {}
    header_lines: dict[str, int] = {}
    accounts: list[str] = []
    account_sections: list[dict[str, str]] = []
    documents: list[PaymentOrder] = []
    section: _Section | None = None
    finished_at = 0
    last_line = 1

    for number, line in enumerate(lines[1:], start=2):
        stripped = line.strip()
        if stripped:
            last_line = number
        if finished_at:
            # A DOS editor's end-of-file mark (Ctrl-Z) may trail the file.
            if stripped.strip("\x1a"):
                raise StatementError(number, f"После строки «{_END_FILE}» (строка {finished_at}) есть данные")
            continue
        if not stripped:
            continue
        if check_controls:
            _refuse_control_characters(line, number)
        word, sep, title = stripped.partition("=")
        word = word.strip()
        if section is not None and word not in _MARKERS:
            # The common line, a field of a section (nine in ten of a statement's lines), read inline: the same
            # checks as _key_value and _Section.add, without two calls and a second partition per line.
            if not sep or not word:
                _key_value(line, number)  # raises with the line quoted
            value = title.strip()
            fields = section.fields
            if word not in fields:
                fields[word] = value
                section.lines[word] = number
            elif fields[word] != value:
                raise StatementError(number, f"Поле «{word}» повторяется с другим значением")
            continue
        if word in (_DOCUMENT_START, _ACCOUNT_START, _END_FILE):
            if section is not None:
                raise section.unclosed()
            if word == _END_FILE:
                finished_at = number
            else:
                section = _Section(word, number, title.strip())
            continue
        if section is None:
            if word in (_DOCUMENT_END, _ACCOUNT_END):
                raise StatementError(number, f"Строка «{word}» без начала секции")
            key, value = _key_value(line, number)
            if key == "РасчСчет":
                accounts.append(value)
            header.setdefault(key, value)
            header_lines.setdefault(key, number)
            continue
        if (section.kind, word) in ((_DOCUMENT_START, _DOCUMENT_END), (_ACCOUNT_START, _ACCOUNT_END)):
            if section.kind == _DOCUMENT_START:
                documents.append(_payment_order(section))
            else:
                account_sections.append(section.fields)
            section = None
            continue
        if word in (_DOCUMENT_END, _ACCOUNT_END):
            raise StatementError(number, f"Строка «{word}» закрывает не ту секцию")
        key, value = _key_value(line, number)
        section.add(key, value, number)

    if section is not None:
        raise section.unclosed()
    if not finished_at:
        raise StatementError(last_line, f"Файл не завершён строкой «{_END_FILE}»: возможно, он обрезан")
    return _statement(codec, header, header_lines, accounts, account_sections, documents)


def _statement(
    codec: str,
    header: dict[str, str],
    header_lines: dict[str, int],
    accounts: list[str],
    account_sections: list[dict[str, str]],
    documents: list[PaymentOrder],
) -> Statement:
    def header_date(key: str) -> date | None:
        return _parse_date(header[key], header_lines[key], key) if header.get(key) else None

    return Statement(
        format_version=header.get("ВерсияФормата", ""),
        encoding=codec,
        sender=header.get("Отправитель", ""),
        recipient=header.get("Получатель", ""),
        accounts=accounts,
        header=header,
        account_sections=account_sections,
        created_date=header_date("ДатаСоздания"),
        start_date=header_date("ДатаНачала"),
        end_date=header_date("ДатаКонца"),
        documents=documents,
    )


def _plain_document(kind: str, raw: dict[str, str], line_number: int) -> PaymentOrder | None:
    """_payment_order for the fast reader: None wherever that one would raise (the caller then reads the file
    line by line, which finds the first error in file order and words it)."""
    amount_text = raw.get("Сумма")
    date_text = raw.get("Дата")
    if not amount_text or not date_text or amount_text.startswith("-"):
        return None
    match = _AMOUNT_RE.fullmatch(amount_text)
    if match is None:
        return None
    roubles, kopecks = match.groups()
    received = raw.get("ДатаПоступило")
    written_off = raw.get("ДатаСписано")
    try:
        return _order_of(
            kind,
            raw,
            int(roubles) * 100 + int((kopecks or "0").ljust(2, "0")),
            _date_of(date_text),
            _date_of(received) if received else None,
            _date_of(written_off) if written_off else None,
            line_number,
        )
    except ValueError:
        return None


def _read_plain(lines: list[str], codec: str) -> Statement | None:
    """The statement of a well-formed file whose lines need no strip() (see _ODD_IN_TEXT_RE), read a section at a
    time: a section's field lines become its dict in one comprehension instead of a loop step each. Returns None
    at anything unusual — a malformed or repeated field, a marker out of place, a bad amount or date, text after
    the end — and parse_statement then reads the file line by line with every check and message; so this reader
    only ever answers what that one would, for files that one accepts."""
    header: dict[str, str] = {}
    header_lines: dict[str, int] = {}
    accounts: list[str] = []
    account_sections: list[dict[str, str]] = []
    documents: list[PaymentOrder] = []
    find = lines.index
    count = len(lines)
    i = 1  # lines[i] is line i + 1; line 1 is the file marker, checked by _decode
    while i < count:
        line = lines[i]
        if not line:
            i += 1
            continue
        word, sep, title = line.partition("=")
        if word == _DOCUMENT_START or word == _ACCOUNT_START:
            try:
                end = find(_DOCUMENT_END if word == _DOCUMENT_START else _ACCOUNT_END, i + 1)
            except ValueError:
                return None
            block = lines[i + 1 : end]
            try:
                # A line without "=" (a blank one, a marker) splits into one part, which dict() refuses.
                fields = dict(map(_split_field, block))
            except ValueError:
                return None
            if len(fields) != len(block) or "" in fields or not _MARKERS.isdisjoint(fields):
                return None  # a repeated field (maybe with another value), an empty key, a section inside
            if word == _DOCUMENT_START:
                order = _plain_document(title, fields, i + 1)
                if order is None:
                    return None
                documents.append(order)
            else:
                account_sections.append(fields)
            i = end + 1
            continue
        if line == _END_FILE:
            if any(lines[i + 1 :]):
                return None  # something after the end (or a DOS end-of-file mark): let the line reader judge
            return _statement(codec, header, header_lines, accounts, account_sections, documents)
        if not sep or not word or word in _MARKERS:
            return None
        if word == "РасчСчет":
            accounts.append(title)
        header.setdefault(word, title)
        header_lines.setdefault(word, i + 1)
        i += 1
    return None


# --- matching ---------------------------------------------------------------------------------------


def incoming_for(statement: Statement, account_number: str, inn: str = "") -> list[PaymentOrder]:
    """The documents that credit money to our account: its number is the payee's account, or — in a statement of our
    account whose lines leave ПолучательСчет out, as some banks' exports do — the payer is someone else."""
    ours = "".join(account_number.split())
    statement_of_ours = ours in {"".join(a.split()) for a in statement.accounts} or any(
        "".join(s.get("РасчСчет", "").split()) == ours for s in statement.account_sections
    )
    found = []
    for doc in statement.documents:
        payee = "".join(doc.payee_account.split())
        if payee == ours:
            found.append(doc)
        elif not payee and statement_of_ours and "".join(doc.payer_account.split()) != ours:
            if not doc.payee_inn.strip() or not inn or doc.payee_inn.strip() == inn:
                found.append(doc)
    return found


# The full number "2026-000123" is ours wherever it stands; a shortened one ("2026-123") only counts
# right after a word like "счёт"/"сч."/"№", so that dates such as 2026-11-25 are not taken for invoices.
_FULL_NUMBER = re.compile(r"(?<![0-9-])(20[0-9]{2})\s*[-‐‑–—]\s*([0-9]{6})(?![0-9-])")
_SHORT_NUMBER = re.compile(
    r"(?:\bсч(?:[её]т[а-яё]*)?\.?|№|\bN)\s*(?:№|N|#)?\s*(20[0-9]{2})\s*[-‐‑–—]\s*([0-9]{1,6})(?![0-9-])",
    re.IGNORECASE,
)


# How accountants write our numbers when they do not copy them: «сч.17», «счёт № 17» (a bare serial only right after
# a word for invoice: «договор № 7» is not ours), «2026/17», «№2026 000017».
_LOOSE_NUMBER = re.compile(
    r"\bсч(?:[её]т[а-яё]*)?\.?\s*(?:№|N|#)?\s*(?:(20[0-9]{2})\s*[/\\ ]\s*)?([0-9]{1,6})(?![0-9/.,-])",
    re.IGNORECASE,
)
_SPACED_NUMBER = re.compile(r"(?:№|\bN)\s*(20[0-9]{2})\s+([0-9]{6})(?![0-9])")
_SLASH_NUMBER = re.compile(r"(?<![0-9/.])(20[0-9]{2})\s*/\s*([0-9]{1,6})(?![0-9/.,-])")


def find_invoice_refs(purpose: str) -> list[tuple[int | None, int]]:
    """Invoice references in a payment purpose as (year or None, serial), in order of mention: our full numbers
    first-class, then the customary short forms, whose year (when missing) the payer's ИНН must settle."""
    found: list[tuple[int, tuple[int | None, int]]] = []
    taken: list[tuple[int, int]] = []

    def add(match: re.Match[str], year: str | None, serial: str) -> None:
        span = match.span()
        if any(a < span[1] and span[0] < b for a, b in taken) or not int(serial):
            return
        taken.append(span)
        found.append((span[0], (int(year) if year else None, int(serial))))

    for pattern in (_FULL_NUMBER, _SHORT_NUMBER, _SPACED_NUMBER, _SLASH_NUMBER, _LOOSE_NUMBER):
        for match in pattern.finditer(purpose):
            add(match, match.group(1), match.group(2))
    result: list[tuple[int | None, int]] = []
    for _, ref in sorted(found):
        if ref not in result:
            result.append(ref)
    return result


def find_invoice_numbers(purpose: str) -> list[str]:
    """Invoice numbers mentioned in a payment purpose, normalised to "YYYY-NNNNNN", in order of mention."""
    found: list[tuple[int, str]] = []
    for pattern in (_FULL_NUMBER, _SHORT_NUMBER):
        for match in pattern.finditer(purpose):
            year, serial = match.group(1), int(match.group(2))
            if serial:
                found.append((match.start(1), f"{year}-{serial:06d}"))
    result: list[str] = []
    for _, number in sorted(found):
        if number not in result:
            result.append(number)
    return result


# --- writing (tests, benchmarks, the demo) ----------------------------------------------------------


def _format_value(key: str, value: object) -> str:
    if isinstance(value, bool):
        raise TypeError(f"{key}: bool is not a statement value")
    if isinstance(value, int) and key in _MONEY_KEYS:
        if value < 0:
            raise ValueError(f"{key} must not be negative")
        return f"{value // 100}.{value % 100:02d}"
    if isinstance(value, date):
        return value.strftime("%d.%m.%Y")
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"{key}: a statement value cannot contain a line break")
    return text


def build_statement(
    header: Mapping[str, object],
    documents: Sequence[Mapping[str, object]],
    encoding: str,
    *,
    account_sections: Sequence[Mapping[str, object]] = (),
) -> bytes:
    """A valid statement file: header fields, account sections, then documents, CRLF line ends.

    `encoding` is "Windows", "DOS" or "UTF-8" (or the codec names cp1251, cp866, utf-8); it is also
    written as "Кодировка=". An int "Сумма" (or balance) is taken as kopecks, dates may be `date`
    objects; a list value in the header (e.g. several "РасчСчет") becomes several lines. A document's
    "СекцияДокумент" key sets its kind (default "Платежное поручение").
    """
    codec = _CODECS.get(_encoding_key(encoding))
    if codec is None:
        raise ValueError(f"unknown statement encoding: {encoding!r}")
    head: dict[str, object] = {"ВерсияФормата": "1.03", _ENCODING_KEY: _DECLARED[codec]}
    head.update({k: v for k, v in header.items() if k != _ENCODING_KEY})

    lines = [FILE_MARKER]
    for name, value in head.items():
        values = value if isinstance(value, list | tuple) else [value]
        lines += [f"{name}={_format_value(name, item)}" for item in values]
    for section in account_sections:
        lines.append(_ACCOUNT_START)
        lines += [f"{name}={_format_value(name, value)}" for name, value in section.items()]
        lines.append(_ACCOUNT_END)
    for document in documents:
        kind = document.get(_DOCUMENT_START, "Платежное поручение")
        lines.append(f"{_DOCUMENT_START}={_format_value(_DOCUMENT_START, kind)}")
        lines += [f"{name}={_format_value(name, value)}" for name, value in document.items() if name != _DOCUMENT_START]
        lines.append(_DOCUMENT_END)
    lines.append(_END_FILE)
    return ("\r\n".join(lines) + "\r\n").encode(codec)
