"""Settings from environment variables, with safe defaults for a local demo and a strict production mode."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Every setting the portal reads, with its local default. The README's configuration table mirrors this.
DEFAULTS: dict[str, Any] = {
    "PORTAL_ENV": "local",  # "production" refuses local-only defaults
    "SECRET_KEY": None,  # local: generated once and kept in instance/secret_key
    "DATABASE_URL": None,  # local: sqlite:///<instance>/portal.db
    "BASE_URL": "http://127.0.0.1:5000",  # how the outside world (payment provider, CRM) reaches the portal
    "SMS_BACKEND": "console",  # console | http
    "SMS_API_URL": "https://sms.ru/sms/send",
    "SMS_API_KEY": "",
    "SMS_SENDER": "",
    "RATELIMIT_STORAGE_URI": "memory://",  # redis://127.0.0.1:6379/0 when several servers run
    "SMS_CODE_TTL_SECONDS": 300,
    "SMS_CODE_MAX_ATTEMPTS": 5,
    "SMS_SEND_LIMIT_PER_PHONE": "3 per 10 minutes;10 per day",
    "SMS_SEND_LIMIT_PER_IP": "20 per hour",
    "SMS_ALLOWED_COUNTRIES": "RU",  # ISO 3166 codes, comma-separated: where sign-in codes may be sent
    "PAYMENT_PROVIDER": "sandbox",  # sandbox | yookassa
    "SANDBOX_WEBHOOK_SECRET": None,  # local: derived from SECRET_KEY
    "YOOKASSA_SHOP_ID": "",
    "YOOKASSA_SECRET_KEY": "",
    "YOOKASSA_TRUSTED_IPS": (
        "185.71.76.0/27,185.71.77.0/27,77.75.153.0/25,77.75.156.11/32,77.75.156.35/32,77.75.154.128/25,2a02:5180::/32"
    ),
    "YOOKASSA_CHECK_IP": True,  # switch off only behind a proxy named in PROXY_FIX_HOPS
    "PROXY_FIX_HOPS": 0,
    # ЭДО: УПД go to the buyer's operator through the seller's operator (Kontur.Diadoc's HTTP API); "emulator" is the
    # local stand-in (devtools/edo_emulator.py, started by `make run` on port + 56) speaking the same API.
    "EDO_BACKEND": "emulator",  # emulator | diadoc | off
    "EDO_EMULATOR_URL": "http://127.0.0.1:5056",
    "DIADOC_API_URL": "https://diadoc-api.kontur.ru",
    "DIADOC_AUTH_URL": "https://identity.kontur.ru",
    "DIADOC_CLIENT_ID": "",
    "DIADOC_CLIENT_SECRET": "",
    "DIADOC_REFRESH_TOKEN": "",
    "EDO_SIGNER": "local",  # local (a test key in the instance folder) | service (the vendor's КЭП signing service)
    "EDO_SIGNING_URL": "",
    "EDO_SIGNING_TOKEN": "",
    # Production with PROXY_FIX_HOPS=0 and a public https BASE_URL must say that clients really connect directly.
    "NO_REVERSE_PROXY": False,
    "CRM_BACKEND": "emulator",  # emulator | amocrm
    "CRM_EMULATOR_URL": "http://127.0.0.1:5055",
    "CRM_OUTBOX_DELIVERY": "",  # task (default) | sync | off: how messenger changes reach the CRM after commit
    "AMOCRM_CLIENT_ID": "",
    "AMOCRM_CLIENT_SECRET": "",
    "AMOCRM_REDIRECT_URI": "",
    "MESSENGER_API_TOKEN": None,  # bearer token of the messenger backend; local: derived from SECRET_KEY
    "EMAIL_BACKEND": "console",  # console | smtp
    "SMTP_HOST": "",
    "SMTP_PORT": 587,
    "SMTP_USER": "",
    "SMTP_PASSWORD": "",
    "EMAIL_FROM": "billing@example.ru",
    "DOCUMENT_STORE_PATH": None,  # local: <instance>/documents
    # s3://bucket/prefix: issued documents in an S3-compatible object store (several servers); empty: the folder
    "DOCUMENT_STORE_URL": "",
    "S3_ENDPOINT_URL": "",  # empty: AWS; e.g. https://storage.yandexcloud.net or a MinIO address
    "S3_REGION": "ru-central1",
    "S3_ACCESS_KEY_ID": "",
    "S3_SECRET_ACCESS_KEY": "",
    # The task queue: local: sqlite:///<instance>/tasks.db; production: redis://host:6379/1; tests: immediate
    "TASK_QUEUE_URL": None,
    # How soon lost work is taken over. The defaults suit production; a test that kills a worker shortens them.
    "TASK_PERIODIC_SECONDS": 60,  # how often a worker runs the periodic tasks (sweeps, the billing tick)
    "TASK_LOST_AFTER_SECONDS": 120,  # a queued task run nobody took for this long is sent again
    "TASK_SILENT_AFTER_SECONDS": 300,  # a running task run silent this long lost its worker: sent again
    "CRM_OUTBOX_LEASE_SECONDS": 300,  # a CRM change a worker took and never finished is offered again after this
    "INVOICE_VALID_BANKING_DAYS": 5,
    "MAX_OPEN_INVOICES": 5,
    "GRACE_DAYS": 7,  # days a paid plan is kept after its period ends while the renewal invoice is unpaid  # unpaid invoices an account may hold at once; the next checkout by invoice is refused
    # Autopayment: the charge this many days before the paid period ends, the warning this many days before the end
    # (more than the charge's, so the owner has days to cancel), retries this many days after the first attempt.
    "AUTOPAY_CHARGE_DAYS_BEFORE": 3,
    "AUTOPAY_NOTICE_DAYS_BEFORE": 5,
    "AUTOPAY_RETRY_DAYS": "0,1,3,5",
    # A smaller plan chosen for a period further away than this is scheduled unpaid; the tick opens its payment
    # (an invoice, or a card payment the owner is asked for) this many days before it begins.
    "SCHEDULED_PAYMENT_DAYS": 14,
    "CHECKOUT_LIMIT_PER_ACCOUNT": "30 per hour",  # checkout attempts (POST) of one account
    "CHECKOUT_LIMIT_PER_IP": "60 per hour",  # checkout attempts (POST) from one address
    "SUPPORT_REQUESTS_PER_DAY": 5,  # new requests to support (trial, >1000 users) of one account in 24 hours
    "SMS_BUDGET_PER_HOUR": 500,  # sign-in codes the whole portal sends in an hour; staff are alerted when reached
    "LICENSE_VERSION": "2026-01",
    "VAT_RATE": "",  # empty: exempt (подп. 26 п. 2 ст. 149 НК РФ); "22": 22 % VAT
    "SUPPORT_PHONE": "+7 800 000-00-00",
    "SUPPORT_EMAIL": "support@example.ru",
    "MAX_UPLOAD_BYTES": 5 * 1024 * 1024,
    # The seller (the vendor): a demo company with valid check digits; production sets the real ones.
    "SELLER_NAME": "ООО «Мессенджер Плюс»",
    "SELLER_INN": "7712345671",
    "SELLER_KPP": "771201001",
    "SELLER_OGRN": "1027700123450",
    "SELLER_ADDRESS": "123112, г. Москва, Пресненская наб., д. 10, офис 501",
    "SELLER_BANK_NAME": "ПАО Сбербанк, г. Москва",
    "SELLER_BIK": "044525225",
    "SELLER_CORR_ACCOUNT": "30101810400000000225",
    "SELLER_ACCOUNT": "40702810303800012345",
    "SELLER_DIRECTOR": "Иванов И. И.",
    "SELLER_ACCOUNTANT": "Петрова А. С.",
    "SELLER_EDO_ID": "2BM-7712345671-771201001-000000000000000000001",
}

INT_KEYS = {
    "SMS_CODE_TTL_SECONDS",
    "SMS_CODE_MAX_ATTEMPTS",
    "SMTP_PORT",
    "INVOICE_VALID_BANKING_DAYS",
    "MAX_OPEN_INVOICES",
    "GRACE_DAYS",
    "AUTOPAY_CHARGE_DAYS_BEFORE",
    "AUTOPAY_NOTICE_DAYS_BEFORE",
    "SCHEDULED_PAYMENT_DAYS",
    "SUPPORT_REQUESTS_PER_DAY",
    "SMS_BUDGET_PER_HOUR",
    "MAX_UPLOAD_BYTES",
    "PROXY_FIX_HOPS",
    "TASK_PERIODIC_SECONDS",
    "TASK_LOST_AFTER_SECONDS",
    "TASK_SILENT_AFTER_SECONDS",
    "CRM_OUTBOX_LEASE_SECONDS",
}
BOOL_KEYS = {"YOOKASSA_CHECK_IP", "NO_REVERSE_PROXY"}

# 32 random bytes: 64 hex digits, or 43 characters of url-safe base64 (`secrets.token_urlsafe(32)`).
MIN_SECRET_HEX = 64
MIN_SECRET_CHARS = 43
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


class ConfigError(RuntimeError):
    """A setting is missing or wrong; the message names it."""


def _coerce(key: str, raw: str) -> Any:
    if key in INT_KEYS:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key} must be an integer, got {raw!r}") from None
    if key in BOOL_KEYS:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return raw


def load_config(instance_path: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then the environment, then explicit overrides (tests); then local defaults are filled in."""
    cfg: dict[str, Any] = dict(DEFAULTS)
    for key in DEFAULTS:
        if key in os.environ:
            cfg[key] = _coerce(key, os.environ[key])
    if overrides:
        cfg.update(overrides)

    production = cfg["PORTAL_ENV"] == "production"
    if production:
        check_production(cfg)
    instance = Path(instance_path)
    if not cfg["SECRET_KEY"]:
        cfg["SECRET_KEY"] = _local_secret(instance)
    if not cfg["DATABASE_URL"]:
        cfg["DATABASE_URL"] = f"sqlite:///{instance / 'portal.db'}"
    if not cfg["DOCUMENT_STORE_PATH"]:
        cfg["DOCUMENT_STORE_PATH"] = str(instance / "documents")
    if not cfg["TASK_QUEUE_URL"]:
        # Tests run tasks where they are enqueued unless they start a worker of their own.
        cfg["TASK_QUEUE_URL"] = "immediate" if cfg.get("TESTING") else f"sqlite:///{instance / 'tasks.db'}"
    if not cfg["SANDBOX_WEBHOOK_SECRET"]:
        cfg["SANDBOX_WEBHOOK_SECRET"] = _derive(cfg["SECRET_KEY"], "sandbox-webhook")
    if not cfg["MESSENGER_API_TOKEN"]:
        cfg["MESSENGER_API_TOKEN"] = _derive(cfg["SECRET_KEY"], "messenger-api")
    cfg["SESSION_COOKIE_HTTPONLY"] = True
    cfg["SESSION_COOKIE_SAMESITE"] = "Lax"
    cfg["SESSION_COOKIE_SECURE"] = production
    cfg["REMEMBER_COOKIE_HTTPONLY"] = True
    cfg["REMEMBER_COOKIE_SECURE"] = production
    cfg["REMEMBER_COOKIE_SAMESITE"] = "Lax"
    cfg["MAX_CONTENT_LENGTH"] = cfg["MAX_UPLOAD_BYTES"]
    cfg["RATELIMIT_STORAGE_URI"] = cfg["RATELIMIT_STORAGE_URI"]
    cfg.setdefault("WTF_CSRF_TIME_LIMIT", None)
    return cfg


def check_production(cfg: Mapping[str, Any]) -> None:
    """Production must not run on anything that only makes sense on a developer's machine."""
    problems = []
    if not cfg.get("SECRET_KEY"):
        problems.append("SECRET_KEY is not set")
    elif not strong_secret(cfg["SECRET_KEY"]):
        problems.append(_weak("SECRET_KEY"))
    url = cfg.get("DATABASE_URL") or ""
    if not url or url.startswith("sqlite"):
        problems.append("DATABASE_URL must point at PostgreSQL (postgresql+psycopg://…), not SQLite")
    if cfg.get("SMS_BACKEND") == "console":
        problems.append("SMS_BACKEND=console only logs codes; set SMS_BACKEND=http and SMS_API_KEY")
    elif cfg.get("SMS_BACKEND") == "http" and not cfg.get("SMS_API_KEY"):
        problems.append("SMS_API_KEY is not set for SMS_BACKEND=http")
    if cfg.get("PAYMENT_PROVIDER") == "sandbox":
        problems.append("PAYMENT_PROVIDER=sandbox takes no real money; set PAYMENT_PROVIDER=yookassa")
    elif cfg.get("PAYMENT_PROVIDER") == "yookassa" and not (
        cfg.get("YOOKASSA_SHOP_ID") and cfg.get("YOOKASSA_SECRET_KEY")
    ):
        problems.append("YOOKASSA_SHOP_ID and YOOKASSA_SECRET_KEY are required for PAYMENT_PROVIDER=yookassa")
    if cfg.get("CRM_BACKEND") == "emulator":
        problems.append("CRM_BACKEND=emulator is the local CRM emulator; set CRM_BACKEND=amocrm")
    if cfg.get("EDO_BACKEND") == "emulator":
        problems.append("EDO_BACKEND=emulator is the local ЭДО emulator; set EDO_BACKEND=diadoc (or off)")
    elif cfg.get("EDO_BACKEND") == "diadoc" and cfg.get("EDO_SIGNER") != "service":
        problems.append("EDO_SIGNER=local signs with a test key, not a КЭП; set EDO_SIGNER=service and EDO_SIGNING_URL")
    if not cfg.get("MESSENGER_API_TOKEN"):
        problems.append("MESSENGER_API_TOKEN is not set")
    elif not strong_secret(cfg["MESSENGER_API_TOKEN"]):
        problems.append(_weak("MESSENGER_API_TOKEN"))
    storage = str(cfg.get("RATELIMIT_STORAGE_URI") or "memory://")
    if storage.startswith("memory://"):
        # Each gunicorn worker would keep counters of its own, so every limit multiplies with the workers.
        problems.append("RATELIMIT_STORAGE_URI=memory:// counts per worker; set it to redis://host:6379/0")
    queue = str(cfg.get("TASK_QUEUE_URL") or "")
    if not queue.startswith(("redis://", "rediss://")):
        # A SQLite queue file is one server's: workers elsewhere would never see its tasks.
        problems.append("TASK_QUEUE_URL must point at Redis (redis://host:6379/1) so workers on every server share it")
    if str(cfg.get("DOCUMENT_STORE_URL") or "").startswith("s3://") and not (
        cfg.get("S3_ACCESS_KEY_ID") and cfg.get("S3_SECRET_ACCESS_KEY")
    ):
        problems.append("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are required for DOCUMENT_STORE_URL=s3://…")
    base = urlsplit(str(cfg.get("BASE_URL") or ""))
    public = base.scheme == "https" and (base.hostname or "") not in LOCAL_HOSTS
    if public and not cfg.get("PROXY_FIX_HOPS") and not cfg.get("NO_REVERSE_PROXY"):
        problems.append(
            "PROXY_FIX_HOPS=0 with a public https BASE_URL: set PROXY_FIX_HOPS to the number of reverse proxies in "
            "front of gunicorn (1 for nginx), or NO_REVERSE_PROXY=true if clients really connect directly"
        )
    if problems:
        raise ConfigError("Refusing to start in production mode: " + "; ".join(problems))


def strong_secret(value: str) -> bool:
    """At least 32 random bytes as people write them: 64 hex digits, or 43+ characters of a wider alphabet.

    A long run of one character is not random whatever its length, so a key also needs varied characters."""
    text = str(value)
    if len(set(text)) < 16:
        return False
    if all(c in "0123456789abcdefABCDEF" for c in text):
        return len(text) >= MIN_SECRET_HEX
    return len(text) >= MIN_SECRET_CHARS


def _weak(name: str) -> str:
    return (
        f"{name} is shorter than 32 random bytes; generate one with "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )


def _local_secret(instance: Path) -> str:
    """A local secret generated once and kept, so sessions survive restarts of the demo."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(key)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return key


def _derive(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()
