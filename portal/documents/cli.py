"""`flask payments import-statement FILE`: the bank-statement import from the command line (cron, support by hand)."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext

from portal.db import get_db, utcnow
from portal.documents.invoices import DocumentsError
from portal.payments.bank import import_statement
from portal.payments.statement import StatementError


@click.command(
    "import-statement", help="Загрузить банковскую выписку (1CClientBankExchange) и сопоставить платежи со счетами."
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def import_statement_command(file: Path) -> None:
    try:
        result = import_statement(get_db(), file.read_bytes(), file_name=file.name, actor=None, now=utcnow())
    except (StatementError, DocumentsError) as exc:
        raise click.ClickException(f"Файл не принят, ничего не загружено. {exc}") from None
    click.echo(result.summary)
    for line in result.matched:
        click.echo(f"  оплачен: {line.reference}, {line.payer_name}")
    for line in result.unmatched:
        click.echo(f"  не сопоставлен: {line.reference}, {line.payer_name}: {line.reason}")


def init_app(app: Flask) -> None:
    # The card-payments feature may own a "payments" group too; whichever registers first, both commands share it.
    group = app.cli.commands.get("payments")
    if group is None:
        group = click.Group("payments", help="Платежи: банковские выписки и оплаты.")
        app.cli.add_command(group)
    if not isinstance(group, click.Group):
        raise RuntimeError("the 'payments' CLI name is taken by a command, not a group")
    group.add_command(import_statement_command)
