"""The owner's CRM page: connect amoCRM by OAuth, see the sync journal and the outbox, sync now, disconnect."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import Session
from wtforms import EmailField
from wtforms.validators import DataRequired

from portal.accounts.access import require_account, roles_required
from portal.accounts.forms import EmptyForm, PhoneField
from portal.accounts.models import Role
from portal.db import get_db, utcnow
from portal.nav import register_nav
from portal.pagination import AFTER, BEFORE, decode_key, keys_from_args
from portal.seats.errors import MembershipError
from portal.tasks.runs import get_run as get_task_run
from portal.tasks.runs import run_state
from portal.textinput import PortalForm

from . import oauth
from .amocrm import NAME_MAX_LENGTH
from .base import CrmError
from .factory import CrmSettings
from .models import OutboxOperation
from .outbox import EMAIL_NEEDED
from .outbox_items import cancel_item, get_item, retry_item, set_email_and_retry
from .service import (
    connect_with_code,
    connection_page,
    disconnect_account,
    start_sync,
)
from .sync import (
    COUNT_LABELS,
    ENTRY_KEY_TYPES,
    ENTRY_TITLES,
    PENDING_KEY_TYPES,
    PENDING_REASONS,
    get_run,
    import_pending_user,
    list_entries_page,
)

log = logging.getLogger(__name__)

PENDING_PREFIX = "pending_"
PENDING_PAGE = 100  # CRM users waiting for a phone, per page of /crm
JOURNAL_PAGE = 200  # lines of a run's journal per page

bp = Blueprint("crm", __name__, url_prefix="/crm")

register_nav("crm.connection_show", "CRM", (Role.OWNER.value,), order=50)

STATE_KEY = "crm_oauth"
RUN_KEY = "crm_task_run"
OWNER = Role.OWNER.value
T = TypeVar("T")


class OutboxEmailForm(PortalForm):
    email = EmailField("E-mail", validators=[DataRequired("Укажите адрес почты.")])


class PendingPhoneForm(PortalForm):
    phone = PhoneField("Телефон", render_kw={"inputmode": "tel", "placeholder": "+7 999 123-45-67"})


def _settings() -> CrmSettings:
    return CrmSettings.from_config(current_app.config)


def _actor() -> Any:
    return current_user._get_current_object()  # type: ignore[attr-defined]


def _back() -> Any:
    return redirect(url_for("crm.connection_show"))


def _check_form(form: FlaskForm | None = None) -> None:
    if not (form or EmptyForm()).validate_on_submit():
        abort(400, "Форма устарела: обновите страницу и попробуйте ещё раз.")


def _task_run(db: Session, account_id: int) -> tuple[Any, Any]:
    """The sync this person started: shown with its progress while it runs, and its outcome once."""
    task_run = task_state = None
    run_id = session.get(RUN_KEY)
    if isinstance(run_id, int):
        task_run = get_task_run(db, run_id)
        if task_run is None or task_run.account_id != account_id:
            task_run = None
            session.pop(RUN_KEY, None)
        else:
            task_state = run_state(task_run)
            if task_run.finished:
                session.pop(RUN_KEY, None)
    return task_run, task_state


@bp.get("")
@roles_required(OWNER)
def connection_show() -> Any:
    db = get_db()
    account = require_account()
    # Its own keys in the URL (pending_after / pending_before): the page may one day page other lists too.
    after = decode_key(request.args.get(PENDING_PREFIX + AFTER), PENDING_KEY_TYPES)
    before = decode_key(request.args.get(PENDING_PREFIX + BEFORE), PENDING_KEY_TYPES)
    page = connection_page(db, account.id, pending_limit=PENDING_PAGE, pending_after=after, pending_before=before)
    task_run, task_state = _task_run(db, account.id)
    return render_template(
        "seats/crm_connection.html",
        account=account,
        settings=_settings(),
        **{f.name: getattr(page, f.name) for f in dataclasses.fields(page)},
        name_max_length=NAME_MAX_LENGTH,
        entry_titles=ENTRY_TITLES,
        count_labels=COUNT_LABELS,
        pending_reasons=PENDING_REASONS,
        email_needed=EMAIL_NEEDED,
        create_op=OutboxOperation.CREATE_USER.value,
        form=EmptyForm(),
        task_run=task_run,
        task_state=task_state,
        email_form=OutboxEmailForm(),
        phone_form=PendingPhoneForm(),
    )


@bp.post("/connect")
@roles_required(OWNER)
def connection_start() -> Any:
    _check_form()
    account = require_account()
    state = oauth.new_state()
    # The state lives in the signed session cookie, not in process memory, so any server can finish the flow.
    session[STATE_KEY] = {"state": state, "account_id": account.id}
    return redirect(_settings().authorize_url(state))


def _check_callback_state(account_id: int) -> None:
    saved = session.pop(STATE_KEY, None)
    expected = saved.get("state") if isinstance(saved, dict) and saved.get("account_id") == account_id else None
    if not oauth.check_state(expected, request.args.get("state")):
        abort(
            400,
            "Ответ CRM не относится к вашему подключению (устарел или подделан). "
            "Начните подключение заново на странице CRM.",
        )


@bp.get("/callback")
@roles_required(OWNER)
def connection_callback() -> Any:
    account = require_account()
    _check_callback_state(account.id)
    if request.args.get("error"):
        flash("Доступ к CRM не предоставлен: в окне CRM нажали «Отклонить». CRM не подключена.", "warning")
        return _back()
    code = request.args.get("code", "")
    if not code or len(code) > 2000:
        abort(400, "CRM не передала код авторизации. Начните подключение заново.")
    db = get_db()
    referer = request.args.get("referer")
    try:
        connection, run_id = connect_with_code(
            db, account_id=account.id, actor=_actor(), settings=_settings(), code=code, referer=referer, now=utcnow()
        )
    except CrmError as exc:
        log.warning("CRM connection of account %s failed: %s", account.id, exc.message)
        flash(f"Не удалось подключить CRM: {exc.message}", "error")
        return _back()
    flash(f"CRM подключена: {connection.crm_account_name} ({connection.subdomain}).", "success")
    _sync_started(run_id)
    return _back()


def _sync_started(run_id: int | None) -> None:
    """Commit the queued sync and remember it, so the CRM page shows its progress."""
    get_db().commit()
    if run_id is None:
        flash("CRM не подключена.", "error")
        return
    session[RUN_KEY] = run_id


@bp.post("/sync")
@roles_required(OWNER)
def sync_run() -> Any:
    _check_form()
    _sync_started(start_sync(get_db(), require_account().id, _actor(), trigger="manual"))
    return _back()


@bp.post("/disconnect")
@roles_required(OWNER)
def connection_disconnect() -> Any:
    _check_form()
    db = get_db()
    account = require_account()
    connection = disconnect_account(db, account_id=account.id, actor=_actor(), now=utcnow())
    db.commit()
    if connection is not None:
        flash(
            "CRM отключена: ключи доступа удалены. Пользователи мессенджера остались как были. "
            "Чтобы окончательно отозвать доступ, отключите интеграцию и в настройках самой CRM.",
            "success",
        )
    return _back()


@bp.get("/runs/<int:run_id>")
@roles_required(OWNER)
def run_show(run_id: int) -> Any:
    db = get_db()
    account = require_account()
    run = get_run(db, account.id, run_id)
    if run is None:
        abort(404)
    after, before = keys_from_args(request.args, ENTRY_KEY_TYPES)
    return render_template(
        "seats/crm_run.html",
        account=account,
        run=run,
        entries=list_entries_page(db, run.id, limit=JOURNAL_PAGE, after=after, before=before),
        entry_titles=ENTRY_TITLES,
        count_labels=COUNT_LABELS,
    )


def _item_or_404(item_id: int) -> Any:
    item = get_item(get_db(), require_account().id, item_id)
    if item is None:
        abort(404)
    return item


def _act(change: Callable[[Session], T], done: Callable[[T], str]) -> Any:
    """Make one change the owner asked for: committed and told (`done(result)`), or refused with the service's
    message; back to the CRM page either way."""
    db = get_db()
    try:
        result = change(db)
    except MembershipError as exc:
        db.rollback()
        flash(exc.message, "error")
        return _back()
    db.commit()
    flash(done(result), "success")
    return _back()


@bp.post("/outbox/<int:item_id>/retry")
@roles_required(OWNER)
def outbox_retry(item_id: int) -> Any:
    return _on_item(item_id, retry_item, "Задание снова в очереди: отправим в CRM в ближайшие минуты.")


@bp.post("/outbox/<int:item_id>/cancel")
@roles_required(OWNER)
def outbox_cancel(item_id: int) -> Any:
    return _on_item(item_id, cancel_item, "Задание отменено: в CRM это изменение не попадёт.")


def _on_item(item_id: int, change: Callable[[Session, Any, datetime], object], message: str) -> Any:
    """The owner's plain action on an outbox item (retry, cancel): done now, with `message` as the outcome."""
    _check_form()
    item = _item_or_404(item_id)
    return _act(lambda db: change(db, item, utcnow()), lambda _: message)


@bp.post("/outbox/<int:item_id>/email")
@roles_required(OWNER)
def outbox_email(item_id: int) -> Any:
    form = OutboxEmailForm()
    item = _item_or_404(item_id)
    if not form.validate_on_submit():
        flash("Укажите адрес почты, например anna@example.ru.", "error")
        return _back()
    return _act(
        lambda db: set_email_and_retry(db, item, form.email.data, utcnow()),
        lambda _: "Почта сохранена, пользователь снова в очереди на создание в CRM.",
    )


@bp.post("/pending/<int:crm_user_id>/phone")
@roles_required(OWNER)
def pending_import(crm_user_id: int) -> Any:
    form = PendingPhoneForm()
    account = require_account()
    if not form.validate_on_submit():
        flash(" ".join(form.phone.errors) or "Проверьте номер телефона.", "error")
        return _back()
    return _act(
        lambda db: import_pending_user(db, account.id, crm_user_id, form.phone.data, utcnow(), _actor()),
        lambda membership: f"{membership.name} добавлен(а) в мессенджер и связан(а) с CRM.",
    )
