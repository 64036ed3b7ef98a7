"""The statement parser's two readers — a section at once for plain files, line by line for anything unusual —
give the same statement or the same refusal: on every sample bank file and on damaged copies of them."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import portal.payments.statement as statement

SAMPLES = sorted((Path(__file__).parent / "samples").rglob("*.txt"))
INSERTS = [
    b" ",
    b"=",
    b"\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\xa0",
    b"-",
    b"\t",
    b"\x1a",
    b"\r\n\r\n",
    "КонецДокумента".encode("cp1251"),
]


def parsed(data: bytes, *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(statement, "_read_plain", lambda *args: None)  # as if the file needed the line reader
        try:
            return "ok", statement.parse_statement(data)
        except statement.StatementError as exc:
            return "refused", str(exc)


def damaged(base: bytes, rnd: random.Random) -> bytes:
    data = bytearray(base)
    for _ in range(rnd.randint(1, 3)):
        pos = rnd.randrange(len(data))
        choice = rnd.random()
        if choice < 0.3:
            del data[pos : pos + rnd.randint(1, 20)]
        elif choice < 0.6:
            data[pos:pos] = rnd.choice(INSERTS)
        else:  # a line repeated somewhere else
            lines = bytes(data).split(b"\n")
            lines.insert(rnd.randrange(len(lines)), lines[rnd.randrange(len(lines))])
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_both_readers_agree_on_a_bank_file_and_its_damaged_copies(sample: Path, monkeypatch: pytest.MonkeyPatch):
    base = sample.read_bytes()
    read_plain, taken = statement._read_plain, []

    def spied(*args: Any) -> Any:
        result = read_plain(*args)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(statement, "_read_plain", spied)
    first = parsed(base, fast=True, monkeypatch=monkeypatch)
    assert first == parsed(base, fast=False, monkeypatch=monkeypatch)
    assert first[0] == "ok" and first[1].documents  # a sample is a real statement
    rnd = random.Random(sample.name)  # the same copies on every run
    outcomes = set()
    for _ in range(60):
        data = damaged(base, rnd)
        fast = parsed(data, fast=True, monkeypatch=monkeypatch)
        assert fast == parsed(data, fast=False, monkeypatch=monkeypatch), data
        outcomes.add(fast[0])
    assert any(taken) and not all(taken)  # the section reader took some files and handed others to the line reader
    assert outcomes == {"ok", "refused"}  # the copies reach both answers, so both readers were compared on each
