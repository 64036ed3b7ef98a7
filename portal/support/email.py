"""Outgoing e-mail: a console backend for the demo (a log line and an .eml file) and SMTP for production."""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Protocol

from flask import Flask, current_app

log = logging.getLogger(__name__)

BACKENDS = ("console", "smtp")
SMTP_TIMEOUT_SECONDS = 30


class EmailError(RuntimeError):
    """The message was not sent; the text is for the staff member who asked to send it."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "application/pdf"
    data: bytes


class EmailBackend(Protocol):
    def send(self, message: EmailMessage) -> None: ...


def build_message(
    *,
    sender: str,
    to: str,
    subject: str,
    body: str,
    attachments: Iterable[Attachment] = (),
    now: datetime | None = None,
) -> EmailMessage:
    """A plain-text letter with attachments; the file names may be Cyrillic (RFC 2231 encoded)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    domain = sender.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = make_msgid(domain=domain)
    msg.set_content(body)
    for item in attachments:
        maintype, _, subtype = item.content_type.partition("/")
        msg.add_attachment(item.data, maintype=maintype, subtype=subtype or "octet-stream", filename=item.filename)
    return msg


class ConsoleEmailBackend:
    """Sends nothing: logs one line per message and keeps the .eml in instance/outbox, to open it in a mail client."""

    def __init__(self, outbox: Path | str | None) -> None:
        self.outbox = Path(outbox) if outbox is not None else None

    def send(self, message: EmailMessage) -> None:
        saved = ""
        if self.outbox is not None:
            self.outbox.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            path = self.outbox / f"{stamp}-{secrets.token_hex(4)}.eml"
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(bytes(message))
            os.replace(tmp, path)  # a half-written letter never appears in the outbox
            saved = f" → {path}"
        files = sum(1 for _ in message.iter_attachments())
        log.info("Email to %s: %s (вложений: %d)%s", message["To"], message["Subject"], files, saved)


class SmtpEmailBackend:
    """SMTP with STARTTLS (or implicit TLS on port 465); a password is never sent over an unencrypted link."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str = "",
        password: str = "",
        *,
        timeout: float = SMTP_TIMEOUT_SECONDS,
        smtp_class: Any = smtplib.SMTP,
        smtp_ssl_class: Any = smtplib.SMTP_SSL,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.user, self.password = host, int(port), user, password
        self.timeout = timeout
        self.smtp_class, self.smtp_ssl_class = smtp_class, smtp_ssl_class
        self.ssl_context = ssl_context

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def send(self, message: EmailMessage) -> None:
        try:
            if self.port == 465:
                conn = self.smtp_ssl_class(self.host, self.port, timeout=self.timeout, context=self._context())
                encrypted = True
            else:
                conn = self.smtp_class(self.host, self.port, timeout=self.timeout)
                encrypted = False
            with conn:
                conn.ehlo()
                if not encrypted and conn.has_extn("starttls"):
                    conn.starttls(context=self._context())
                    conn.ehlo()
                    encrypted = True
                if self.user:
                    if not encrypted:
                        raise EmailError(
                            f"Почтовый сервер {self.host}:{self.port} не поддерживает шифрование (STARTTLS): "
                            "пароль по открытому каналу не отправляем. Проверьте SMTP_HOST и SMTP_PORT."
                        )
                    conn.login(self.user, self.password)
                refused = conn.send_message(message)
        except EmailError:
            raise
        except smtplib.SMTPAuthenticationError:
            raise EmailError("Почтовый сервер не принял логин или пароль (SMTP_USER, SMTP_PASSWORD).") from None
        except smtplib.SMTPRecipientsRefused:
            raise EmailError(f"Почтовый сервер отказался принять письмо для {message['To']}.") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise EmailError(
                f"Не удалось отправить письмо через {self.host}:{self.port}: {exc}. Попробуйте ещё раз позже."
            ) from None
        if refused:
            raise EmailError(f"Почтовый сервер отказался принять письмо для {', '.join(refused)}.")
        log.info("Email to %s sent via %s:%s: %s", message["To"], self.host, self.port, message["Subject"])


def backend_from_config(config: Mapping[str, Any], instance_path: str | os.PathLike[str]) -> EmailBackend:
    override = config.get("EMAIL_BACKEND_OBJECT")  # tests hand in a recorder, as with SMS_BACKEND_OBJECT
    if override is not None:
        return override
    name = config.get("EMAIL_BACKEND", "console")
    if name == "smtp":
        return SmtpEmailBackend(
            str(config.get("SMTP_HOST") or ""),
            int(config.get("SMTP_PORT") or 587),
            str(config.get("SMTP_USER") or ""),
            str(config.get("SMTP_PASSWORD") or ""),
        )
    if name == "console":
        return ConsoleEmailBackend(Path(instance_path) / "outbox")
    raise EmailError(f"Неизвестный EMAIL_BACKEND={name!r}: ожидается console или smtp.")


def get_email_backend(app: Flask | None = None) -> EmailBackend:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    return backend_from_config(app.config, app.instance_path)
