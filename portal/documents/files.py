"""A document's files: written to the store under a name that carries their hash, and recorded in the database."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from portal.documents.models import StoredFile
from portal.documents.store import Written, get_store, sha256_hex


def stored_path(account_id: int, folder: str, stem: str, data: bytes, extension: str) -> str:
    """Where the bytes go in the store: the name carries part of their hash, so a retry that renders the same bytes
    finds the same name and the store's write-once promise holds; different bytes never overwrite earlier ones."""
    return f"{account_id}/{folder}/{stem}-{sha256_hex(data)[:16]}.{extension}"


def record_file(
    db: Session, written: Written, *, account_id: int, kind: str, content_type: str, download_name: str, now: datetime
) -> StoredFile:
    """The database's record of a file in the store, with the hash every read is checked against."""
    row = StoredFile(
        account_id=account_id,
        kind=kind,
        path=written.path,
        sha256=written.sha256,
        size=written.size,
        content_type=content_type,
        download_name=download_name,
        created_at=now,
    )
    db.add(row)
    db.flush()
    return row


def store_file(
    db: Session,
    config: Mapping[str, Any],
    *,
    account_id: int,
    kind: str,
    folder: str,
    stem: str,
    extension: str,
    data: bytes,
    content_type: str,
    download_name: str,
    now: datetime,
) -> StoredFile:
    """Write bytes to the store under a name that carries their hash, and record the hash in the database."""
    written = get_store(config).write(stored_path(account_id, folder, stem, data, extension), data)
    return record_file(
        db, written, account_id=account_id, kind=kind, content_type=content_type, download_name=download_name, now=now
    )
