"""`flask billing tick`: the scheduled work of billing, safe to run every minute on every server."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from portal.billing.tick import tick
from portal.db import get_db, utcnow

billing_cli = AppGroup("billing", help="Подписки: истечение периодов, запланированные смены тарифа, заказы.")
# The scheduled commands (this tick, notices' sweep) run "as of" a given moment for checks; cron gives none.
now_option = click.option(
    "--now", "now_text", default=None, help="Момент, на который выполнить работу (ISO 8601; для проверки)."
)


def _parse_now(value: str | None) -> datetime:
    if not value:
        return utcnow()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("ожидается дата и время ISO 8601, например 2027-01-01T00:30:00+03:00") from None
    if moment.tzinfo is None:
        raise click.BadParameter("укажите часовой пояс, например +03:00 или Z")
    return moment.astimezone(UTC)


@billing_cli.command(
    "tick", help="Применить окончания периодов, запланированные смены тарифа, закрыть неоплаченные заказы."
)
@now_option
@with_appcontext
def tick_command(now_text: str | None) -> None:
    now = _parse_now(now_text)
    echo_done(tick(get_db(), now, grace_days=current_app.config["GRACE_DAYS"]), nothing="Нечего делать.")


def echo_done(done: list[str], *, nothing: str) -> None:
    """A scheduled command's answer: a line for each thing done and their count, or `nothing` when none was due."""
    if not done:
        click.echo(nothing)
        return
    for line in done:
        click.echo(f"• {line}")
    click.echo(f"Готово: {len(done)}.")


def init_app(app: Flask) -> None:
    app.cli.add_command(billing_cli)
