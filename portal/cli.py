"""Command-line tasks: migrations, demo data, staff, and the local demo server (with its task queue worker)."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.accounts.models import Account, Membership, MembershipStatus, Role, Source, User
from portal.accounts.phone import InvalidPhone, format_phone, normalize_phone
from portal.accounts.service import make_staff
from portal.db import get_database, get_db, utcnow
from portal.models import module_exists

MIGRATIONS = Path(__file__).parent / "migrations"

DEMO_OWNER = "+79990000001"
DEMO_ACCOUNTANT = "+79990000002"
DEMO_SMALL_OWNER = "+79990000003"
DEMO_STAFF = "+79990000099"
DEMO_MEMBERS = [
    ("+79990000010", "Борис Кузнецов"),
    ("+79990000011", "Вера Попова"),
    ("+79990000012", "Глеб Васильев"),
    ("+79990000013", "Дарья Новикова"),
    ("+79990000014", "Егор Морозов"),
    ("+79990000015", "Жанна Волкова"),
    ("+79990000016", "Захар Лебедев"),
]


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def init_app(app: Flask) -> None:
    app.cli.add_command(db_group)
    app.cli.add_command(seed_demo)
    app.cli.add_command(staff_group)
    app.cli.add_command(run_demo)


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


def _member(db: Any, account: Account, phone: str, name: str, role: Role) -> User:
    user = db.scalars(sa.select(User).where(User.phone == phone)).first()
    if user is None:
        user = User(phone=phone, name=name)
        db.add(user)
        db.flush()
    exists = db.scalars(
        sa.select(Membership).where(Membership.account_id == account.id, Membership.user_id == user.id)
    ).first()
    if exists is None:
        db.add(
            Membership(
                account_id=account.id,
                user_id=user.id,
                role=role.value,
                status=MembershipStatus.ACTIVE.value,
                source=Source.PORTAL.value,
                name=name,
                seen_at=utcnow(),
            )
        )
    return user


def seed_demo_data(db: Any) -> dict[str, Any]:
    """Idempotent: finds the demo companies by their owners, creates what is missing."""
    demo: dict[str, Any] = {}

    def company(owner_phone: str, owner_name: str, name: str) -> Account:
        owner = db.scalars(sa.select(User).where(User.phone == owner_phone)).first()
        if owner is not None:
            m = db.scalars(
                sa.select(Membership).where(Membership.user_id == owner.id, Membership.role == Role.OWNER.value)
            ).first()
            if m is not None:
                return db.get(Account, m.account_id)
        account = Account(name=name, created_at=utcnow())
        db.add(account)
        db.flush()
        _member(db, account, owner_phone, owner_name, Role.OWNER)
        return account

    big = company(DEMO_OWNER, "Анна Смирнова", "ООО «Ромашка»")
    _member(db, big, DEMO_ACCOUNTANT, "Ольга Бухгалтерова", Role.ACCOUNTANT)
    for phone, name in DEMO_MEMBERS:
        _member(db, big, phone, name, Role.MEMBER)
    small = company(DEMO_SMALL_OWNER, "Сергей Соколов", "ИП Соколов С. В.")
    _member(db, small, "+79990000020", "Мария Соколова", Role.MEMBER)
    _member(db, small, "+79990000021", "Павел Орлов", Role.MEMBER)
    # The accountant serves both companies, as accountants often do: the switcher shows both.
    _member(db, small, DEMO_ACCOUNTANT, "Ольга Бухгалтерова", Role.ACCOUNTANT)
    db.flush()
    staff = db.scalars(sa.select(User).where(User.phone == DEMO_STAFF)).first()
    if staff is None:
        staff = User(phone=DEMO_STAFF, name="Служба поддержки", is_staff=True)
        db.add(staff)
    db.commit()
    demo.update(big=big, small=small, staff=staff)
    # Features add their own demo data (requisites, CRM users, …) through portal.<feature>.demo.seed.
    from portal import FEATURES

    for feature in FEATURES:
        name = f"portal.{feature}.demo"
        if module_exists(name):
            module = importlib.import_module(name)
            if hasattr(module, "seed"):
                module.seed(db, demo)
                db.commit()
    return demo


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
    from portal import FEATURES

    for feature in FEATURES:
        name = f"portal.{feature}.demo"
        if module_exists(name):
            module = importlib.import_module(name)
            if hasattr(module, "start"):
                module.start(app)
    get_database().engine.dispose()
    click.echo(demo_banner(app.config["BASE_URL"]), err=True)
    sys.stdout.flush()
    # Each request is a line in werkzeug's log; a person running the demo wants the SMS codes, not the access log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # Flask ignores app.run() under the `flask` command, so the server is started directly.
    from werkzeug.serving import run_simple

    from portal.tasks import IMMEDIATE, start_consumer

    # The task queue's worker runs beside the server in this process: one command, one terminal, stopped together.
    consumer = None
    if app.config["TASK_QUEUE_URL"] != IMMEDIATE:
        consumer = start_consumer(app, workers=2, signals=False)
    # `kill` (SIGTERM) stops the demo as Ctrl+C does: the worker finishes what it is doing, then both end.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    finally:
        if consumer is not None:
            consumer.stop(graceful=True)
