"""Demo: a local amoCRM emulator with ООО «Ромашка»'s CRM users, connected so «Синхронизировать сейчас» works."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, has_app_context
from werkzeug.serving import BaseWSGIServer, make_server

from devtools.crm_emulator import Emulator, QuietHandler, create_app
from portal.db import utcnow
from portal.seats.crm.base import CrmAccountInfo
from portal.seats.crm.factory import CrmSettings
from portal.seats.crm.service import connect_account
from portal.seats.crm.sync import get_connection

log = logging.getLogger(__name__)

STATE_FILE = "crm.json"
GROUPS = ("Бухгалтерия", "Склад")
# (name, e-mail, phone, group index: 0 sales (the CRM's default group), 1 accounting, 2 warehouse, free user)
PEOPLE = (
    # The demo company's owner and two members are in the CRM too: the first sync links them, nobody doubles.
    ("Анна Смирнова", "anna@romashka.example", "+79990000001", 0, False),
    ("Борис Кузнецов", "boris@romashka.example", "+79990000010", 0, False),
    ("Вера Попова", "vera@romashka.example", "+7 999 000-00-11", 1, False),
    ("Игорь Соловьёв", "igor@romashka.example", "+79161002030", 0, False),
    ("Кира Андреева", "kira@romashka.example", "+79161002031", 0, True),
    ("Лев Григорьев", "lev@romashka.example", "+79161002032", 0, False),
    ("Марина Фролова", "marina@romashka.example", "8 916 100-20-33", 1, False),
    ("Никита Яковлев", "nikita@romashka.example", "+79161002034", 1, True),
    ("Оксана Романова", "oksana@romashka.example", "+79161002035", 2, False),
    ("Пётр Зайцев", "petr@romashka.example", "+79161002036", 2, True),
    ("Роман Борисов", "roman@romashka.example", "+79161002037", 2, False),
    ("Светлана Орлова", "svetlana@romashka.example", "+79161002038", 0, False),
    ("Тимур Макаров", "timur@romashka.example", "+79161002039", 2, True),
    # Without a phone: the messenger signs in by phone, so the CRM page asks the owner for one.
    ("Ульяна Никитина", "ulyana@romashka.example", None, 1, False),
    ("Фёдор Сергеев", "fedor@romashka.example", None, 0, True),
)


def _state_path(app: Flask) -> Path:
    return Path(app.instance_path) / STATE_FILE


def _emulator(app: Flask) -> Emulator:
    settings = CrmSettings.from_config(app.config)
    return Emulator(
        state_file=_state_path(app),
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        redirect_uri=settings.redirect_uri,
    )


def _fill(emulator: Emulator) -> None:
    if emulator.users():
        return
    groups = [0] + [emulator.add_group(name).id for name in GROUPS]
    for index, (name, email, phone, group, free) in enumerate(PEOPLE):
        emulator.add_user(name, email, phone=phone, group_id=groups[group], is_free=free, is_admin=index == 0)


def seed(db: Any, demo: dict[str, Any]) -> None:
    """Fill the emulator's state file and connect ООО «Ромашка» to it (idempotent; tokens are renewed)."""
    if not has_app_context():
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = CrmSettings.from_config(app.config)
    if settings.backend != "emulator":
        return
    emulator = _emulator(app)
    _fill(emulator)
    account = demo["big"]
    connection = get_connection(db, account.id)
    if connection is not None and connection.status == "disconnected":
        return  # the owner disconnected it on purpose: the demo shows connecting again
    info = emulator.account()
    connect_account(
        db,
        account_id=account.id,
        actor=None,
        backend="emulator",
        base_url=settings.emulator_url,
        subdomain=info["subdomain"],
        info=CrmAccountInfo(info["id"], info["name"], info["subdomain"]),
        # The state file is shared with the emulator that `flask run-demo` serves, so these tokens work there.
        tokens=emulator.issue_tokens(settings.client_id),
        cipher=settings.cipher,
        now=utcnow(),
    )
    db.commit()


def start(app: Flask) -> BaseWSGIServer | None:
    """Serve the emulator on CRM_EMULATOR_URL's port in a thread of the demo server (returned, for tests)."""
    settings = CrmSettings.from_config(app.config)
    if settings.backend != "emulator":
        return None
    parts = urlsplit(settings.emulator_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    emulator = _emulator(app)
    _fill(emulator)
    try:
        server = make_server(host, port, create_app(emulator), threaded=True, request_handler=QuietHandler)
    except (OSError, SystemExit):
        # Werkzeug exits on a busy port; the portal must still start (an emulator may already run there).
        log.warning("CRM emulator not started: %s:%s is busy; the portal talks to whatever answers there", host, port)
        return None
    threading.Thread(target=server.serve_forever, name="crm-emulator", daemon=True).start()
    print(f"  Эмулятор CRM: {settings.emulator_url} (пользователи и отделы CRM: {settings.emulator_url}/_admin)")
    return server
