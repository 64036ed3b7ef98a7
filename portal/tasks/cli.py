"""`flask worker`: a task queue worker, to run on any number of servers beside gunicorn."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from . import IMMEDIATE, create_consumer


def init_app(app: Flask) -> None:
    app.cli.add_command(worker_command)


@click.command("worker", help="Запустить обработчик фоновых задач (очередь Huey из TASK_QUEUE_URL).")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Потоков-исполнителей.")
@click.option("--no-periodic", is_flag=True, help="Не запускать задачи по расписанию (они идут на других серверах).")
@with_appcontext
def worker_command(workers: int, no_periodic: bool) -> None:
    if current_app.config["TASK_QUEUE_URL"] == IMMEDIATE:
        raise click.UsageError("TASK_QUEUE_URL=immediate выполняет задачи сразу, обработчик не нужен.")
    consumer = create_consumer(current_app._get_current_object(), workers=workers, periodic=not no_periodic)
    click.echo(f"Обработчик задач запущен: {current_app.config['TASK_QUEUE_URL'].split('@')[-1]}", err=True)
    consumer.run()
