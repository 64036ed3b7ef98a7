"""`flask seats sync` (cron): reconcile every connected account with its CRM, then drain the outbox."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.db import get_database, utcnow

from .factory import CrmSettings, build_client, client_factory
from .models import ConnectionStatus, CrmConnection
from .outbox import deliver_outbox
from .sync import sync_account


def init_app(app: Flask) -> None:
    # The seats package may own a `seats` command group already: join it rather than replace it.
    group = app.cli.commands.get("seats")
    if not isinstance(group, click.Group):
        group = click.Group("seats", help="Места, пользователи и синхронизация с CRM.")
        app.cli.add_command(group)
    group.add_command(sync_command)
    group.add_command(deliver_command)


@click.command("sync", help="Синхронизировать пользователей всех подключённых CRM и отправить очередь изменений.")
@click.option("--account", "account_id", type=int, default=None, help="Только эту компанию (ID аккаунта).")
@click.option("--no-outbox", is_flag=True, help="Не отправлять очередь изменений мессенджера в CRM.")
@with_appcontext
def sync_command(account_id: int | None, no_outbox: bool) -> None:
    database = get_database()
    settings = CrmSettings.from_config(current_app.config)
    with database.session() as db:
        q = sa.select(CrmConnection).where(
            CrmConnection.access_token_enc.is_not(None),
            CrmConnection.status != ConnectionStatus.DISCONNECTED.value,
        )
        if account_id is not None:
            q = q.where(CrmConnection.account_id == account_id)
        connections = list(db.scalars(q.order_by(CrmConnection.account_id)))
    failures = 0
    for connection in connections:
        with database.session() as db, build_client(settings, connection, database.sessionmaker) as client:
            result = sync_account(db, connection.account_id, client, utcnow(), trigger="cron")
        failures += not result.ok
        click.echo(f"Аккаунт {connection.account_id} ({connection.crm_account_name}): {result.message}")
    if not connections:
        click.echo("Нет подключённых CRM.")
    if not no_outbox:
        _deliver(account_id)
    if failures:
        sys.exit(1)


@click.command("deliver", help="Отправить в CRM изменения мессенджера, которые ждут в очереди.")
@click.option("--limit", type=int, default=1000, show_default=True)
@with_appcontext
def deliver_command(limit: int) -> None:
    _deliver(None, limit)


def _deliver(account_id: int | None, limit: int = 1000) -> None:
    database = get_database()
    settings = CrmSettings.from_config(current_app.config)
    result = deliver_outbox(
        database.session, client_factory(settings, database.sessionmaker), utcnow(), limit, account_id=account_id
    )
    click.echo(result.message)
