"""A loopback SMTP server speaking just enough of RFC 5321 for smtplib, so the SMTP backend is tested offline."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    data: bytes


@dataclass
class FakeSmtpState:
    messages: list[Received] = field(default_factory=list)
    ehlo_lines: tuple[str, ...] = ("SIZE 10485760", "8BITMIME")
    refuse_rcpt: bool = False


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def _send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        state = self.server.state
        self._send("220 fake.smtp.local ESMTP ready")
        mail_from, rcpt = "", []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode("ascii", "replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                lines = ["fake.smtp.local", *state.ehlo_lines]
                for extra in lines[:-1]:
                    self._send(f"250-{extra}")
                self._send(f"250 {lines[-1]}")
            elif verb == "HELO":
                self._send("250 fake.smtp.local")
            elif verb == "MAIL":
                mail_from, rcpt = line.split(":", 1)[1].strip().split(" ")[0].strip("<>"), []
                self._send("250 OK")
            elif verb == "RCPT":
                if state.refuse_rcpt:
                    self._send("550 No such mailbox")
                    continue
                rcpt.append(line.split(":", 1)[1].strip().strip("<>"))
                self._send("250 OK")
            elif verb == "DATA":
                self._send("354 End data with <CR><LF>.<CR><LF>")
                chunks = []
                while True:
                    chunk = self.rfile.readline()
                    if chunk in (b".\r\n", b".\n", b""):
                        break
                    chunks.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                state.messages.append(Received(mail_from, rcpt, b"".join(chunks)))
                self._send("250 OK: queued")
            elif verb in ("RSET", "NOOP"):
                self._send("250 OK")
            elif verb == "QUIT":
                self._send("221 Bye")
                return
            else:
                self._send("502 Command not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: FakeSmtpState


@contextmanager
def fake_smtp_server(state: FakeSmtpState | None = None) -> Iterator[tuple[str, int, FakeSmtpState]]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state or FakeSmtpState()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), int(port), server.state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
