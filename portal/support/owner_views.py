"""The owner's requests to support: a free month of a plan, or a plan for more than 1000 users.

These views belong to the "support" blueprint (endpoint `support.request_new`, which the plans page and the
dashboard link to) but live at /support-requests/…, outside the staff-only /support console.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import SelectChoice

from portal.accounts.access import require_account, roles_required
from portal.billing.display import users_ru
from portal.db import get_db, utcnow
from portal.support import errors
from portal.support import requests as support_requests
from portal.support.email import EmailError, build_message, get_email_backend
from portal.support.forms import RequestForm
from portal.support.models import RequestKind, SupportRequest

log = logging.getLogger(__name__)

KINDS = (RequestKind.TRIAL.value, RequestKind.LARGE_PLAN.value)


def _kind() -> str:
    kind = (request.args.get("kind") or "").strip()
    return kind if kind in KINDS else RequestKind.LARGE_PLAN.value


@roles_required("owner")
def request_new() -> Any:
    db, account, now, kind = get_db(), require_account(), utcnow(), _kind()
    trial = kind == RequestKind.TRIAL
    plans = support_requests.trial_plans(db, account.id) if trial else []
    form = _request_form(kind, plans)
    unavailable = support_requests.trial_unavailable_reason(db, account.id, now) if trial else None
    status = (400 if unavailable is None else 409) if request.method == "POST" else 200
    refusal: dict[str, str] = {}
    if request.method == "POST" and unavailable is None and form.validate_on_submit():
        sent = _send_request(account, kind, form, now)
        if not isinstance(sent, tuple):
            return sent
        status, refusal = sent
    return render_template(
        "support/request_new.html",
        form=form,
        kind=kind,
        plans=plans,
        account=account,
        unavailable=unavailable,
        existing=refusal.get("existing"),
        limited=refusal.get("limited"),
        mine=support_requests.list_requests_for_account(db, account.id),
    ), status


def _request_form(kind: str, plans: list[Any]) -> RequestForm:
    form = RequestForm()
    form.kind = kind
    form.plan_code.choices = [SelectChoice(p.code, p.title) for p in plans]
    if request.method == "GET":
        wanted = (request.args.get("plan") or "").strip()
        if any(p.code == wanted for p in plans):
            form.plan_code.data = wanted
    return form


def _send_request(account: Any, kind: str, form: RequestForm, now: datetime) -> Any:
    """Save the request and mail support, then go home; or (status, what to show) when it is refused."""
    db = get_db()
    try:
        row = support_requests.create_request(
            db,
            actor=current_user._get_current_object(),  # type: ignore[attr-defined]
            account_id=account.id,
            kind=kind,
            plan_code=form.plan_code.data,
            users_expected=form.users_value,
            comment=form.comment.data,
            now=now,
            per_day=int(current_app.config["SUPPORT_REQUESTS_PER_DAY"]),
        )
        db.commit()
    except errors.RequestAlreadyOpen as exc:
        # A repeat (a second click, a second owner) shows the open request; support is not mailed again.
        db.rollback()
        return 409, {"existing": str(exc)}
    except errors.TooManyRequests as exc:
        db.rollback()
        return 429, {"limited": str(exc)}
    except errors.SupportError as exc:
        db.rollback()
        target = form.plan_code if kind == RequestKind.TRIAL else form.users_expected
        target.errors = [*target.errors, str(exc)]
        return 400, {}
    _notify_support(row, account.name)
    flash(
        f"Заявка № {row.id} отправлена. Поддержка ответит в рабочее время; статус заявки — на главной странице.",
        "success",
    )
    return redirect(url_for("index"))


def _notify_support(row: SupportRequest, account_name: str) -> None:
    """Tell the support mailbox; the request is saved either way, so a mail failure is only logged."""
    config = current_app.config
    what = row.kind_title
    if row.plan_code:
        what += f": «{support_requests.plan_title(row.plan_code)}»"
    if row.users_expected:
        what += f": {users_ru(row.users_expected)}"
    body = (
        f"Компания: {account_name} (аккаунт № {row.account_id})\n"
        f"Заявка: {what}\n"
        f"Комментарий: {row.comment or '—'}\n\n"
        f"Открыть: {config['BASE_URL'].rstrip('/')}{url_for('support.request_show', request_id=row.id)}\n"
    )
    try:
        message = build_message(
            sender=str(config["EMAIL_FROM"]),
            to=str(config["SUPPORT_EMAIL"]),
            subject=f"Заявка № {row.id}: {row.kind_title} — {account_name}",
            body=body,
        )
        get_email_backend().send(message)
    except EmailError as exc:
        log.warning("support request %s: could not notify support by e-mail: %s", row.id, exc)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/support-requests/new", "request_new", request_new, methods=["GET", "POST"])
