"""The document store: a write is all or nothing, an issued file is never rewritten, a read checks the hash."""

from __future__ import annotations

import hashlib

import pytest

from portal.documents import store as store_module
from portal.documents.store import DocumentCorrupted, DocumentStore, StoreError


def files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_write_then_read_gives_the_bytes_and_their_sha256(tmp_path):
    store = DocumentStore(tmp_path)
    written = store.write("7/invoices/2026-000001-abc.pdf", b"%PDF-1.7 one")
    assert written.sha256 == hashlib.sha256(b"%PDF-1.7 one").hexdigest()
    assert written.size == 12
    assert store.read(written.path, written.sha256) == b"%PDF-1.7 one"
    assert files(tmp_path) == ["7/invoices/2026-000001-abc.pdf"]


def test_a_crash_before_the_rename_leaves_neither_the_file_nor_a_temporary_one(tmp_path, monkeypatch):
    store = DocumentStore(tmp_path)
    seen = []

    def crash(tmp, target):
        seen.append(tmp.read_bytes())  # the temporary file was complete, in the same folder
        assert tmp.parent == target.parent
        raise KeyboardInterrupt  # even an interruption, not only an error

    monkeypatch.setattr(store_module, "_before_replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write("7/upd/2026-000001.pdf", b"whole document")
    assert seen == [b"whole document"]
    assert files(tmp_path) == []


def test_an_issued_file_is_never_rewritten(tmp_path):
    store = DocumentStore(tmp_path)
    store.write("1/a.pdf", b"first")
    assert store.write("1/a.pdf", b"first").sha256 == hashlib.sha256(b"first").hexdigest()  # same bytes: fine
    with pytest.raises(StoreError, match="never rewritten"):
        store.write("1/a.pdf", b"second")
    assert (tmp_path / "1" / "a.pdf").read_bytes() == b"first"


def test_a_changed_or_missing_file_is_refused(tmp_path):
    store = DocumentStore(tmp_path)
    written = store.write("1/a.pdf", b"original")
    (tmp_path / "1" / "a.pdf").write_bytes(b"originaL")
    with pytest.raises(DocumentCorrupted):
        store.read(written.path, written.sha256)
    (tmp_path / "1" / "a.pdf").unlink()
    with pytest.raises(DocumentCorrupted, match="missing"):
        store.read(written.path, written.sha256)


@pytest.mark.parametrize("path", ["../etc/passwd", "/abs.pdf", "1/../../x.pdf", "1/a b.pdf", "", "1//a.pdf"])
def test_paths_stay_inside_the_store(tmp_path, path):
    with pytest.raises(StoreError, match="invalid document path"):
        DocumentStore(tmp_path / "store").write(path, b"x")
