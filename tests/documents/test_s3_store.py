"""The S3 document store keeps the folder store's promises, against moto's S3 server over real HTTP."""

from __future__ import annotations

import hashlib
from typing import Any

import boto3
import pytest

from portal.documents.models import StoredFile
from portal.documents.s3store import S3DocumentStore, store_from_config
from portal.documents.store import DocumentCorrupted, StoreError, get_store
from tests.documents.factories import give_requisites, issue


def raw_client(s3: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
    )


def test_written_once_read_back_checked(s3_store: dict[str, str]) -> None:
    store = store_from_config(s3_store)
    data = b"%PDF-1.7 invoice 2026-000001"
    written = store.write("invoices/2026/2026-000001-abc.pdf", data)
    assert written.sha256 == hashlib.sha256(data).hexdigest() and written.size == len(data)
    assert store.read(written.path, written.sha256) == data
    # Under the prefix the URL names, with the hash kept beside it.
    head = raw_client(s3_store).head_object(Bucket="portal-documents", Key="issued/invoices/2026/2026-000001-abc.pdf")
    assert head["Metadata"]["sha256"] == written.sha256 and head["ContentType"] == "application/pdf"


def test_a_name_is_never_given_to_other_bytes(s3_store: dict[str, str]) -> None:
    store = store_from_config(s3_store)
    store.write("upd/1.xml", b"<first/>")
    assert store.write("upd/1.xml", b"<first/>").sha256 == hashlib.sha256(b"<first/>").hexdigest()  # a retry
    with pytest.raises(StoreError, match="never rewritten"):
        store.write("upd/1.xml", b"<second/>")
    assert store.read("upd/1.xml", hashlib.sha256(b"<first/>").hexdigest()) == b"<first/>"


def test_the_store_itself_refuses_to_replace_an_object(s3_store: dict[str, str]) -> None:
    """The conditional PUT, not only our look before it: a writer that raced past the look is refused by S3."""
    client = raw_client(s3_store)
    client.put_object(Bucket="portal-documents", Key="issued/race.pdf", Body=b"theirs")
    with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed"):
        client.put_object(Bucket="portal-documents", Key="issued/race.pdf", Body=b"ours", IfNoneMatch="*")


def test_changed_or_missing_bytes_are_never_served(s3_store: dict[str, str]) -> None:
    store = store_from_config(s3_store)
    written = store.write("invoices/x.pdf", b"%PDF original")
    raw_client(s3_store).put_object(Bucket="portal-documents", Key="issued/invoices/x.pdf", Body=b"%PDF tampered")
    with pytest.raises(DocumentCorrupted, match="does not match"):
        store.read("invoices/x.pdf", written.sha256)
    with pytest.raises(DocumentCorrupted, match="missing"):
        store.read("invoices/never.pdf", written.sha256)


@pytest.mark.parametrize("path", ["../x.pdf", "a/../../b.pdf", "a b.pdf", "", "a//b.pdf"])
def test_paths_outside_the_store_are_refused(s3_store: dict[str, str], path: str) -> None:
    with pytest.raises(StoreError, match="invalid document path"):
        store_from_config(s3_store).write(path, b"x")


def test_a_bad_store_url_is_named(s3_store: dict[str, str]) -> None:
    with pytest.raises(StoreError, match="s3://bucket/prefix"):
        S3DocumentStore("s3:///nobucket")


@pytest.fixture
def app_config(app_config: dict[str, Any], s3_store: dict[str, str], tmp_path: Any) -> dict[str, Any]:
    app_config.update(s3_store, DOCUMENT_STORE_PATH=str(tmp_path / "unused-folder"))
    return app_config


def test_an_invoice_issued_into_s3_downloads_intact(
    app: Any, db: Any, client: Any, auth: Any, make_account: Any, tmp_path: Any
) -> None:
    account = make_account(owner_phone="+79990002001")
    give_requisites(db, account)
    invoice = issue(app, db, account)
    assert isinstance(get_store(app.config), S3DocumentStore)

    auth.login("+79990002001")
    resp = client.get(f"/documents/invoices/{invoice.id}/pdf")

    assert resp.status_code == 200 and resp.data.startswith(b"%PDF")
    stored = db.get(StoredFile, invoice.pdf_file_id)
    assert hashlib.sha256(resp.data).hexdigest() == stored.sha256
    assert not (tmp_path / "unused-folder").exists()  # nothing went to the local folder
