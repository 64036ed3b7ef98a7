"""`flask payments …`: the bank-statement import (cron, support by hand) and the ledger's report for the books."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext

from portal.db import get_db, utcnow
from portal.documents.invoices import DocumentsError
from portal.money import format_rub
from portal.payments import reports
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


@click.command("report", help="Сводка по деньгам за период: поступило, зачтено, возвращено, баланс, не разобрано.")
@click.option("--from", "start", required=True, type=click.DateTime(formats=["%Y-%m-%d", "%d.%m.%Y"]))
@click.option("--to", "end", required=True, type=click.DateTime(formats=["%Y-%m-%d", "%d.%m.%Y"]))
@click.option("--json", "as_json", is_flag=True, help="JSON с суммами в копейках (для проверок и бухгалтерии).")
@with_appcontext
def report_command(start: date, end: date, as_json: bool) -> None:
    if end.date() < start.date():
        raise click.BadParameter("конец периода раньше начала", param_hint="--to")
    data = reports.report(get_db(), start.date(), end.date())
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo(f"С {start:%d.%m.%Y} по {end:%d.%m.%Y}:")
    for key, title in (
        ("received", "Поступило"),
        ("allocated", "Зачтено в заказы"),
        ("refunded", "Возвращено"),
        ("balance", "Осталось на балансах"),
        ("unmatched", "Не разобрано из выписок"),
    ):
        click.echo(f"  {title}: {format_rub(data[key])}")


def init_app(app: Flask) -> None:
    # Another feature may own a "payments" group too; whichever registers first, the commands share it.
    group = app.cli.commands.get("payments")
    if group is None:
        group = click.Group("payments", help="Платежи: банковские выписки и оплаты.")
        app.cli.add_command(group)
    if not isinstance(group, click.Group):
        raise RuntimeError("the 'payments' CLI name is taken by a command, not a group")
    group.add_command(import_statement_command)
    group.add_command(report_command)
