"""`flask documents edo-sweep | mail-sweep`: the ЭДО and e-mail outboxes, for cron or by hand until the task queue runs them."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from portal.db import get_db, utcnow
from portal.documents import edo, mailing

documents_cli = AppGroup("documents", help="Документы: ЭДО и рассылка закрывающих документов.")


@documents_cli.command("edo-sweep", help="ЭДО: поставить в очередь новые УПД, отправить ожидающие, прочитать статусы.")
def edo_sweep_command() -> None:
    for line in edo.sweep(get_db(), now=utcnow(), config=current_app.config, instance_path=current_app.instance_path):
        click.echo(line)


@documents_cli.command("mail-sweep", help="Почта: поставить в очередь и отправить закрывающие документы бухгалтерам.")
def mail_sweep_command() -> None:
    for line in mailing.sweep(
        get_db(), now=utcnow(), config=current_app.config, instance_path=current_app.instance_path
    ):
        click.echo(line)


def init_app(app: Flask) -> None:
    app.cli.add_command(documents_cli)
