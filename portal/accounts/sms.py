"""SMS backends behind one interface: console (local default) and an SMS.ru-style HTTP gateway."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, Protocol

import requests

log = logging.getLogger(__name__)


class SmsError(RuntimeError):
    pass


class SmsRecipientRefused(SmsError):
    """The gateway works but will not deliver to this number (unassigned range, no route): not worth a retry."""


class SmsBackend(Protocol):
    def send(self, phone: str, text: str) -> None: ...


class ConsoleSms:
    """Writes exactly one line per message to stderr, so a developer reads the code in the terminal."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def send(self, phone: str, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(f"SMS to {phone}: {text}\n")
        stream.flush()


class HttpSms:
    """An SMS.ru-style gateway: POST api_id, to, msg, json=1; answer {"status": "OK", "sms": {phone: {...}}}."""

    def __init__(self, url: str, api_key: str, sender: str = "", timeout: float = 10.0) -> None:
        self.url = url
        self.api_key = api_key
        self.sender = sender
        self.timeout = timeout

    def send(self, phone: str, text: str) -> None:
        to = phone.lstrip("+")
        data = {"api_id": self.api_key, "to": to, "msg": text, "json": 1}
        if self.sender:
            data["from"] = self.sender
        try:
            resp = requests.post(self.url, data=data, timeout=self.timeout)
            body = resp.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("SMS gateway request failed: %s", type(exc).__name__)  # the class is for us, not the person
            raise SmsError("SMS-шлюз не ответил") from None
        if resp.status_code != 200 or body.get("status") != "OK":
            raise SmsError(f"SMS-шлюз отказал: {body.get('status_text') or body.get('status') or resp.status_code}")
        entry = (body.get("sms") or {}).get(to) or {}
        if entry.get("status") == "ERROR":
            raise SmsRecipientRefused(entry.get("status_text") or f"код {entry.get('status_code') or 'не указан'}")
        if entry.get("status") != "OK":
            raise SmsError(f"SMS не отправлено: {entry.get('status_text') or 'неизвестная ошибка'}")
        log.info("SMS sent to %s via gateway", phone)


def make_sms_backend(config: Mapping[str, Any]) -> SmsBackend:
    if config.get("SMS_BACKEND_OBJECT") is not None:  # tests inject a recorder here
        return config["SMS_BACKEND_OBJECT"]
    kind = config["SMS_BACKEND"]
    if kind == "console":
        return ConsoleSms()
    if kind == "http":
        return HttpSms(config["SMS_API_URL"], config["SMS_API_KEY"], config.get("SMS_SENDER", ""))
    raise ValueError(f"unknown SMS_BACKEND {kind!r}")
