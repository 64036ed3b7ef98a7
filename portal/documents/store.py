"""The document store: issued documents written once, atomically, and read back only with their SHA-256 intact."""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

_SAFE_PART = re.compile(r"[A-Za-z0-9._-]+")


class StoreError(RuntimeError):
    """The store cannot do what was asked (a path outside it, an attempt to rewrite a document)."""


class DocumentCorrupted(StoreError):
    """A stored file is missing or its bytes no longer have the SHA-256 recorded when it was issued."""


@dataclass(frozen=True)
class Written:
    path: str  # relative to the store root
    sha256: str
    size: int


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_relpath(relpath: str) -> str:
    """A document's path inside any store: safe parts separated by "/", never "." or ".."."""
    parts = relpath.split("/")
    if not parts or not all(_SAFE_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        raise StoreError(f"invalid document path: {relpath!r}")
    return relpath


def already_stored(relpath: str, data: bytes, stored_sha256: str | None) -> Written:
    """A name already taken (by `stored_sha256`'s bytes): accepted as stored for identical bytes, refused for others,
    since issued documents are never rewritten. Every store keeps this promise the same way."""
    digest = sha256_hex(data)
    if stored_sha256 == digest:
        return Written(relpath, digest, len(data))
    raise StoreError(f"{relpath} already holds another document; issued documents are never rewritten")


def missing(relpath: str) -> DocumentCorrupted:
    """The error for a document the store no longer has."""
    return DocumentCorrupted(f"{relpath} is missing from the document store")


def checked(relpath: str, data: bytes, sha256: str) -> bytes:
    """The bytes read from a store, only if they still have the SHA-256 recorded when the document was issued."""
    if sha256_hex(data) != sha256:
        log.error("document %s does not match its SHA-256 %s", relpath, sha256)
        raise DocumentCorrupted(f"{relpath} does not match its recorded SHA-256")
    return data


class DocumentStore:
    """Files under one root folder. Names carry part of the content hash, so a name is never given to other bytes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def _resolve(self, relpath: str) -> Path:
        return self.root.joinpath(*check_relpath(relpath).split("/"))

    def write(self, relpath: str, data: bytes) -> Written:
        """Write `data` at `relpath` atomically: a temporary file in the same folder, fsync, then os.replace.

        A reader (or a crash) sees either no file or the whole file, never part of one. If the file
        already exists it is never rewritten: identical bytes are accepted as already stored, other
        bytes are refused.
        """
        target = self._resolve(relpath)
        digest = sha256_hex(data)
        if target.exists():
            return already_stored(relpath, data, sha256_hex(target.read_bytes()))
        target.parent.mkdir(parents=True, exist_ok=True)
        # The temporary name starts with the target's, so a later attempt can find what a killed one left.
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{target.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            _before_replace(tmp, target)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        _remove_leftovers(target)
        return Written(relpath, digest, len(data))

    def read(self, relpath: str, sha256: str) -> bytes:
        """The stored bytes, checked against the hash kept in the database."""
        target = self._resolve(relpath)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise missing(relpath) from None
        return checked(relpath, data, sha256)


def _remove_leftovers(target: Path) -> None:
    """Half-written temporary files of earlier attempts at this document: a process killed mid-write (SIGKILL, power
    loss) runs no clean-up, so the attempt that finally stores the document removes them."""
    for stale in target.parent.glob(f".tmp-{glob.escape(target.name)}.*.part"):
        stale.unlink(missing_ok=True)


def _before_replace(tmp: Path, target: Path) -> None:
    """The moment between the complete temporary file and the rename; tests inject a crash here."""


class Store(Protocol):
    """What the portal asks of a document store, whichever one it is."""

    def write(self, relpath: str, data: bytes) -> Written: ...

    def read(self, relpath: str, sha256: str) -> bytes: ...


def get_store(config: Mapping[str, Any]) -> Store:
    """The folder under the instance path, or an S3-compatible object store (DOCUMENT_STORE_URL=s3://…) that
    every server reads; both keep the same promises (write once, whole or not at all, SHA-256 checked on read)."""
    if str(config.get("DOCUMENT_STORE_URL") or "").startswith("s3://"):
        # Optional SDK: boto3 is loaded only by a server whose documents live in S3.
        from portal.documents.s3store import store_from_config

        return store_from_config(config)
    return DocumentStore(config["DOCUMENT_STORE_PATH"])
