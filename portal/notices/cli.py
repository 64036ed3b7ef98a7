"""`flask notices sweep`: send the reminders and notices that are due (the periodic task does it every 10 minutes)."""

from __future__ import annotations

from flask import Flask
from flask.cli import AppGroup, with_appcontext

from portal.billing.cli import _parse_now, echo_done, now_option
from portal.db import get_db
from portal.notices.tasks import run_sweep

notices_cli = AppGroup("notices", help="Напоминания и уведомления по электронной почте.")


@notices_cli.command("sweep", help="Отправить напоминания и уведомления, которые пора отправить (каждое один раз).")
@now_option
@with_appcontext
def sweep_command(now_text: str | None) -> None:
    echo_done(run_sweep(get_db(), _parse_now(now_text)), nothing="Нечего отправлять.")


def init_app(app: Flask) -> None:
    app.cli.add_command(notices_cli)
