"""`flask documents edo-sweep | mail-sweep`: the ЭДО and e-mail outboxes, for cron or by hand until the task queue runs them."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.db import get_db, utcnow
from portal.documents import edo, mailing


@click.command("edo-sweep", help="ЭДО: поставить в очередь новые УПД, отправить ожидающие, прочитать статусы.")
@with_appcontext
def edo_sweep_command() -> None:
    for line in edo.sweep(get_db(), now=utcnow(), config=current_app.config, instance_path=current_app.instance_path):
        click.echo(line)


@click.command("mail-sweep", help="Почта: поставить в очередь и отправить закрывающие документы бухгалтерам.")
@with_appcontext
def mail_sweep_command() -> None:
    for line in mailing.sweep(
        get_db(), now=utcnow(), config=current_app.config, instance_path=current_app.instance_path
    ):
        click.echo(line)


def init_app(app: Flask) -> None:
    group = app.cli.commands.get("documents")
    if group is None:
        group = click.Group("documents", help="Документы: ЭДО и рассылка закрывающих документов.")
        app.cli.add_command(group)
    if not isinstance(group, click.Group):
        raise RuntimeError("the 'documents' CLI name is taken by a command, not a group")
    group.add_command(edo_sweep_command)
    group.add_command(mail_sweep_command)
