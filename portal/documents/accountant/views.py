"""Accountant pages: the акт сверки download, resending a document through ЭДО, documents needing attention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from portal.accounts.access import login_required_any, require_account, roles_required, staff_required
from portal.accounts.models import Account
from portal.db import get_db, utcnow
from portal.documents import edo, reconciliation
from portal.documents.accountant import attention
from portal.documents.archive import parse_period
from portal.documents.views import ACCOUNTING, attachment
from portal.nav import register_nav

bp = Blueprint("accountant", __name__)

register_nav("accountant.attention_list", "Все компании", ("accountant",), order=41)
register_nav("accountant.edo_rejected_list", "ЭДО: отказы", ("staff",), order=96)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@bp.route("/documents/reconciliation")
@roles_required(*ACCOUNTING)
def reconciliation_download() -> Any:
    """The акт сверки for a quarter/year (`period=2026-Q4`) or any dates (`start`, `end`), as PDF or XLSX."""
    db = get_db()
    account = require_account()
    fmt = request.args.get("format", "pdf")
    if fmt not in ("pdf", "xlsx"):
        abort(400, "Формат акта сверки: PDF или Excel (xlsx).")
    try:
        if request.args.get("period"):
            period = parse_period(request.args["period"])
            if period is None:
                raise reconciliation.ReconciliationError(
                    "Период указан неверно: нужен квартал (2026-Q4) или год (2026)."
                )
            start, end = period.start, period.end - timedelta(days=1)
        else:
            start, end = reconciliation.parse_dates(request.args.get("start"), request.args.get("end"))
        act = reconciliation.build_reconciliation(db, account.id, start, end, current_app.config)
    except reconciliation.ReconciliationError as exc:
        abort(400, str(exc))
    data = reconciliation.render_pdf(act) if fmt == "pdf" else reconciliation.render_xlsx(act)
    return attachment(data, "application/pdf" if fmt == "pdf" else XLSX, f"{act.file_stem}.{fmt}")


@bp.post("/documents/edo/<int:edo_id>/resend")
@roles_required(*ACCOUNTING)
def edo_resend(edo_id: int) -> Any:
    db = get_db()
    account = require_account()
    try:
        row = edo.request_resend(db, account.id, edo_id, actor=current_user, now=utcnow())
    except edo.EdoError as exc:
        db.rollback()
        flash(str(exc), "error")
    else:
        if row is None:
            abort(404)
        db.commit()
        flash(f"УПД № {row.number} будет отправлен в ЭДО ещё раз.", "success")
    return redirect(url_for("documents.document_list"))


@bp.route("/documents/attention")
@login_required_any
def attention_list() -> Any:
    """Across every company where the person is the accountant (or owner): what needs doing, company named."""
    db = get_db()
    items = attention.list_for_person(db, current_user.id)
    return render_template("accountant/attention_list.html", items=items)


@bp.route("/support/edo")
@staff_required
def edo_rejected_list() -> Any:
    """Staff: documents buyers rejected in ЭДО, with the company and the buyer's reason."""
    db = get_db()
    rows = edo.list_rejected(db)
    ids = {r.account_id for r in rows}
    names = {a.id: a.name for a in db.scalars(sa.select(Account).where(Account.id.in_(ids)))} if ids else {}
    return render_template("accountant/edo_rejected_list.html", rows=rows, names=names)
