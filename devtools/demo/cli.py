"""`flask seed-demo` and `flask run-demo`: the demo companies, and the portal served locally with its emulators and
the task queue's worker in one process (`make run`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from werkzeug.serving import run_simple

from portal.accounts.phone import format_phone
from portal.db import get_database, get_db
from portal.tasks import IMMEDIATE, start_consumer

from . import DEMO_ACCOUNTANT, DEMO_OWNER, DEMO_SMALL_OWNER, DEMO_STAFF, crm, documents, seed_demo_data


def init_app(app: Flask) -> None:
    app.cli.add_command(seed_demo)
    app.cli.add_command(run_demo)


@click.command("seed-demo", help="Создать демонстрационные компании (можно запускать повторно).")
@with_appcontext
def seed_demo() -> None:
    # The demo's own steps (a statement imported, documents formed) are logged for operators; a person starting
    # the demo needs only the result below.
    portal_log = logging.getLogger("portal")
    level = portal_log.level
    portal_log.setLevel(logging.WARNING)
    try:
        demo = seed_demo_data(get_db())
    finally:
        portal_log.setLevel(level)
    click.echo(f"Демо-данные готовы: {demo['big'].name}, {demo['small'].name}")


def follow_port(config: dict[str, Any], port: int, environ: Mapping[str, str] = os.environ) -> None:
    """The demo on another port takes its addresses along: payment returns and the sandbox's notifications
    (BASE_URL) and the CRM emulator (port + 55, as 5055 is to 5000), unless the environment sets them."""
    if "BASE_URL" not in environ:
        config["BASE_URL"] = f"http://127.0.0.1:{port}"
    if "CRM_EMULATOR_URL" not in environ:
        config["CRM_EMULATOR_URL"] = f"http://127.0.0.1:{port + 55}"
    if "EDO_EMULATOR_URL" not in environ:
        config["EDO_EMULATOR_URL"] = f"http://127.0.0.1:{port + 56}"


def demo_banner(base_url: str) -> str:
    return (
        f"\n  Портал: {base_url}\n"
        f"  Вход по телефону: владелец ООО «Ромашка» {format_phone(DEMO_OWNER)}, "
        f"бухгалтер {format_phone(DEMO_ACCOUNTANT)},\n"
        f"  владелец ИП Соколов {format_phone(DEMO_SMALL_OWNER)}, поддержка {format_phone(DEMO_STAFF)}.\n"
        "  Код из SMS печатается в этом терминале строкой «SMS to …». Остановить: Ctrl+C.\n"
    )


@click.command("run-demo", help="Запустить портал локально на http://127.0.0.1:5000 с демо-окружением.")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@with_appcontext
def run_demo(host: str, port: int) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    follow_port(app.config, port)
    documents.start(app)  # the ЭДО emulator on port + 56
    crm.start(app)  # the CRM emulator on port + 55, its state shared with what seed-demo connected
    get_database().engine.dispose()
    click.echo(demo_banner(app.config["BASE_URL"]), err=True)
    sys.stdout.flush()
    # Each request is a line in werkzeug's log; a person running the demo wants the SMS codes, not the access log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # The task queue's worker runs beside the server in this process: one command, one terminal, stopped together.
    consumer = None
    if app.config["TASK_QUEUE_URL"] != IMMEDIATE:
        consumer = start_consumer(app, workers=2, signals=False)
    # `kill` (SIGTERM) stops the demo as Ctrl+C does: the worker finishes what it is doing, then both end.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        # Flask ignores app.run() under the `flask` command, so the server is started directly.
        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    finally:
        if consumer is not None:
            consumer.stop(graceful=True)
