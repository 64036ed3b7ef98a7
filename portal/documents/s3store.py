"""The document store on an S3-compatible object store (boto3): the folder store's promises, kept by S3 itself.

Written once and never rewritten: a PUT carries `If-None-Match: *`, so the store refuses to replace an object,
and a name already taken is accepted only for identical bytes. Never half-written: an S3 PUT becomes visible whole
or not at all, and `ChecksumSHA256` makes the store check the bytes it received against ours before it keeps them.
Checked on every read: the bytes read must have the SHA-256 recorded when the document was issued.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from portal.documents.store import StoreError, Written, already_stored, check_relpath, checked, missing, sha256_hex

_MISSING = {"NoSuchKey", "404", "NotFound"}
_clients: dict[tuple[str, ...], Any] = {}
_clients_lock = threading.Lock()


def _client(endpoint_url: str, region: str, key_id: str, secret: str) -> Any:
    """One client per set of settings: creating one costs far more than a request (boto3 clients are thread-safe)."""
    cache_key = (endpoint_url, region, key_id, secret)
    with _clients_lock:
        if cache_key not in _clients:
            _clients[cache_key] = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url or None,
                region_name=region or None,
                aws_access_key_id=key_id or None,
                aws_secret_access_key=secret or None,
                config=Config(
                    retries={"mode": "standard", "max_attempts": 5},
                    s3={"addressing_style": "path"},
                    connect_timeout=5,
                    read_timeout=30,
                ),
            )
        return _clients[cache_key]


def parse_store_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` → (bucket, "prefix/")."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise StoreError(f"DOCUMENT_STORE_URL must look like s3://bucket/prefix, got {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class S3DocumentStore:
    """Objects under `prefix` in `bucket`; same interface as DocumentStore (write, read)."""

    def __init__(self, url: str, *, endpoint_url: str = "", region: str = "", key_id: str = "", secret: str = ""):
        self.bucket, self.prefix = parse_store_url(url)
        self.client = _client(endpoint_url, region, key_id, secret)

    def _key(self, relpath: str) -> str:
        return self.prefix + check_relpath(relpath)

    def write(self, relpath: str, data: bytes) -> Written:
        key = self._key(relpath)
        digest = sha256_hex(data)
        existing = self._existing_sha(key)
        if existing is None:
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=data,
                    IfNoneMatch="*",
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode(),
                    Metadata={"sha256": digest},
                    ContentType=_content_type(relpath),
                )
                return Written(relpath, digest, len(data))
            except ClientError as exc:
                if _code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                    raise
            # Written by someone else between our look and our PUT: the same rule as below decides.
            existing = self._existing_sha(key)
        return already_stored(relpath, data, existing)

    def _existing_sha(self, key: str) -> str | None:
        """The SHA-256 of the bytes stored under `key` (read and hashed, not taken from metadata), or None."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        return sha256_hex(body)

    def read(self, relpath: str, sha256: str) -> bytes:
        key = self._key(relpath)
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise missing(relpath) from None
            raise
        return checked(relpath, data, sha256)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _content_type(relpath: str) -> str:
    return {"pdf": "application/pdf", "xml": "application/xml"}.get(
        relpath.rpartition(".")[2], "application/octet-stream"
    )


def store_from_config(config: Mapping[str, Any]) -> S3DocumentStore:
    return S3DocumentStore(
        config["DOCUMENT_STORE_URL"],
        endpoint_url=config.get("S3_ENDPOINT_URL") or "",
        region=config.get("S3_REGION") or "",
        key_id=config.get("S3_ACCESS_KEY_ID") or "",
        secret=config.get("S3_SECRET_ACCESS_KEY") or "",
    )
