"""The e-mail backends: the console keeps a readable .eml, SMTP really speaks SMTP (to a loopback server)."""

from __future__ import annotations

import logging
import smtplib
import socket
from email import message_from_bytes, policy
from typing import Any

import pytest

from portal.config import ConfigError
from portal.support import startup
from portal.support.email import (
    Attachment,
    ConsoleEmailBackend,
    EmailError,
    SmtpEmailBackend,
    backend_from_config,
    build_message,
)
from tests.support.smtp_fake import FakeSmtpState, fake_smtp_server

PDF = b"%PDF-1.7 test document"
XML = '<?xml version="1.0" encoding="windows-1251"?><Файл/>'.encode("cp1251")


def letter() -> Any:
    return build_message(
        sender="billing@example.ru",
        to="buh@romashka.example.ru",
        subject="УПД № 2026-000001 от 26.11.2026",
        body="Здравствуйте! Направляем УПД повторно.",
        attachments=[
            Attachment("УПД 2026-000001 от 26.11.2026.pdf", "application/pdf", PDF),
            Attachment("ON_NSCHFDOPPR_2026-000001.xml", "application/xml", XML),
        ],
    )


def parsed(raw: bytes) -> Any:
    return message_from_bytes(raw, policy=policy.default)


def test_message_keeps_russian_names_and_exact_bytes():
    msg = parsed(bytes(letter()))
    assert msg["Subject"] == "УПД № 2026-000001 от 26.11.2026"
    assert "Направляем УПД повторно" in msg.get_body(("plain",)).get_content()
    files = {a.get_filename(): a.get_content() for a in msg.iter_attachments()}
    assert files == {"УПД 2026-000001 от 26.11.2026.pdf": PDF, "ON_NSCHFDOPPR_2026-000001.xml": XML}
    assert msg["Message-ID"].endswith("@example.ru>")


def test_console_backend_logs_one_line_and_writes_the_eml(tmp_path, caplog):
    backend = ConsoleEmailBackend(tmp_path / "outbox")
    with caplog.at_level(logging.INFO, logger="portal.support.email"):
        backend.send(letter())
    lines = [r.getMessage() for r in caplog.records if r.name == "portal.support.email"]
    assert len(lines) == 1
    assert "buh@romashka.example.ru" in lines[0] and "вложений: 2" in lines[0]
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1 and not list((tmp_path / "outbox").glob("*.tmp"))
    msg = parsed(files[0].read_bytes())
    assert [a.get_content() for a in msg.iter_attachments()] == [PDF, XML]


def test_smtp_backend_delivers_to_a_real_smtp_dialogue():
    with fake_smtp_server() as (host, port, state):
        SmtpEmailBackend(host, port, timeout=5).send(letter())
    assert len(state.messages) == 1
    got = state.messages[0]
    assert got.mail_from == "billing@example.ru" and got.rcpt_to == ["buh@romashka.example.ru"]
    msg = parsed(got.data)
    assert msg["Subject"] == "УПД № 2026-000001 от 26.11.2026"
    assert [a.get_content() for a in msg.iter_attachments()] == [PDF, XML]


def test_smtp_refuses_to_send_a_password_unencrypted():
    with fake_smtp_server() as (host, port, state):  # no STARTTLS offered
        with pytest.raises(EmailError, match="STARTTLS"):
            SmtpEmailBackend(host, port, "robot", "secret", timeout=5).send(letter())
    assert state.messages == []


def test_smtp_recipient_refused_is_a_clear_error():
    with fake_smtp_server(FakeSmtpState(refuse_rcpt=True)) as (host, port, _state):
        with pytest.raises(EmailError, match="buh@romashka.example.ru"):
            SmtpEmailBackend(host, port, timeout=5).send(letter())


def test_smtp_server_down_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EmailError, match="Не удалось отправить письмо"):
        SmtpEmailBackend("127.0.0.1", port, timeout=2).send(letter())


class FakeSMTP:
    """Stands in for smtplib.SMTP / SMTP_SSL and records the conversation."""

    calls: list[tuple[Any, ...]] = []

    def __init__(self, host: str, port: int, timeout: float, context: Any = None) -> None:
        FakeSMTP.calls.append(("connect", host, port, context is not None))

    def __enter__(self) -> FakeSMTP:
        return self

    def __exit__(self, *exc: Any) -> None:
        FakeSMTP.calls.append(("quit",))

    def ehlo(self) -> None:
        FakeSMTP.calls.append(("ehlo",))

    def has_extn(self, name: str) -> bool:
        return name == "starttls"

    def starttls(self, context: Any) -> None:
        FakeSMTP.calls.append(("starttls",))

    def login(self, user: str, password: str) -> None:
        if password != "right":
            raise smtplib.SMTPAuthenticationError(535, b"bad")
        FakeSMTP.calls.append(("login", user))

    def send_message(self, msg: Any) -> dict[str, Any]:
        FakeSMTP.calls.append(("send", msg["To"]))
        return {}


def test_smtp_uses_starttls_before_login(monkeypatch):
    FakeSMTP.calls = []
    SmtpEmailBackend("smtp.example.ru", 587, "robot", "right", smtp_class=FakeSMTP).send(letter())
    names = [c[0] for c in FakeSMTP.calls]
    assert names == ["connect", "ehlo", "starttls", "ehlo", "login", "send", "quit"]


def test_smtp_implicit_tls_on_465_and_bad_password():
    FakeSMTP.calls = []
    backend = SmtpEmailBackend("smtp.example.ru", 465, "robot", "wrong", smtp_ssl_class=FakeSMTP)
    with pytest.raises(EmailError, match="логин или пароль"):
        backend.send(letter())
    assert FakeSMTP.calls[0] == ("connect", "smtp.example.ru", 465, True)
    assert ("starttls",) not in FakeSMTP.calls


def test_backend_from_config(tmp_path):
    console = backend_from_config({"EMAIL_BACKEND": "console"}, tmp_path)
    assert isinstance(console, ConsoleEmailBackend) and console.outbox == tmp_path / "outbox"
    smtp = backend_from_config({"EMAIL_BACKEND": "smtp", "SMTP_HOST": "mx.example.ru", "SMTP_PORT": 2525}, tmp_path)
    assert isinstance(smtp, SmtpEmailBackend) and (smtp.host, smtp.port) == ("mx.example.ru", 2525)


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"EMAIL_BACKEND": "pigeon"}, "EMAIL_BACKEND"),
        ({"EMAIL_BACKEND": "smtp", "SMTP_HOST": ""}, "SMTP_HOST"),
        ({"EMAIL_BACKEND": "console", "PORTAL_ENV": "production"}, "EMAIL_BACKEND=console"),
        ({"EMAIL_BACKEND": "console", "EMAIL_FROM": "billing"}, "EMAIL_FROM"),
    ],
)
def test_startup_refuses_bad_email_settings(settings, words):
    base = {"EMAIL_BACKEND": "console", "EMAIL_FROM": "billing@example.ru", "PORTAL_ENV": "local"}
    startup.check(base)  # the local default starts
    startup.check({**base, "EMAIL_BACKEND": "smtp", "SMTP_HOST": "mx.example.ru", "PORTAL_ENV": "production"})
    with pytest.raises(ConfigError, match=words):
        startup.check({**base, **settings})
