"""The product's command line: migrations and support staff here, each feature's commands registered by name (the
demo's commands are development tools: devtools.demo.cli, added by wsgi.py in a checkout)."""

from __future__ import annotations

from pathlib import Path

import click
from alembic import command
from alembic.config import Config as AlembicConfig
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.accounts.phone import InvalidPhone, normalize_phone
from portal.accounts.service import make_staff
from portal.billing import cli as billing_cli
from portal.db import get_db
from portal.documents.accountant import cli as accountant_cli
from portal.notices import cli as notices_cli
from portal.payments import cli as payments_cli
from portal.seats.crm import cli as crm_cli
from portal.tasks import cli as tasks_cli

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def init_app(app: Flask) -> None:
    app.cli.add_command(db_group)
    app.cli.add_command(staff_group)
    billing_cli.init_app(app)  # billing tick
    payments_cli.init_app(app)  # payments import-statement, report, …
    tasks_cli.init_app(app)  # worker
    notices_cli.init_app(app)
    crm_cli.init_app(app)  # seats sync
    accountant_cli.init_app(app)  # documents edo-sweep, mail-sweep


@click.group("db", help="Миграции базы данных (Alembic).")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Привести схему базы к текущей версии.")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    upgrade_database(current_app.config["DATABASE_URL"], revision)
    click.echo("База данных обновлена.")


@db_group.command("downgrade")
@click.argument("revision")
@with_appcontext
def db_downgrade(revision: str) -> None:
    command.downgrade(alembic_config(current_app.config["DATABASE_URL"]), revision)


@db_group.command("current")
@with_appcontext
def db_current() -> None:
    command.current(alembic_config(current_app.config["DATABASE_URL"]), verbose=True)


@db_group.command("revision", help="Создать миграцию по разнице моделей и базы.")
@click.option("-m", "--message", required=True)
@with_appcontext
def db_revision(message: str) -> None:
    command.revision(alembic_config(current_app.config["DATABASE_URL"]), message=message, autogenerate=True)


@click.group("staff", help="Сотрудники поддержки.")
def staff_group() -> None:
    pass


@staff_group.command("add", help="Сделать человека с этим телефоном сотрудником поддержки.")
@click.argument("phone")
@click.option("--name", default=None)
@with_appcontext
def staff_add(phone: str, name: str | None) -> None:
    try:
        e164 = normalize_phone(phone)
    except InvalidPhone as exc:
        raise click.BadParameter(str(exc)) from None
    user = make_staff(get_db(), phone=e164, name=name)
    click.echo(f"{user.phone} теперь сотрудник поддержки.")
