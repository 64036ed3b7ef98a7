"""The page of a task run: its progress (a bar with counts), its result, what failed and a retry button."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, url_for
from flask_login import current_user

from portal.accounts.access import current_membership, login_required_any
from portal.accounts.forms import EmptyForm
from portal.db import get_db

from .models import TaskRun
from .runs import get_run, retry_run, run_state

bp = Blueprint("tasks", __name__, url_prefix="/tasks")


def _visible_run(run_id: int) -> TaskRun:
    """A run is the business of its account's people (in the account chosen now) and of staff; others get 404."""
    run = get_run(get_db(), run_id)
    if run is None:
        abort(404)
    if current_user.is_staff:
        return run
    membership = current_membership()
    if run.account_id is None or membership is None or membership.account_id != run.account_id:
        abort(404)
    return run


@bp.get("/<int:task_run_id>")
@login_required_any
def run_show(task_run_id: int) -> Any:
    run = _visible_run(task_run_id)
    return render_template("tasks/run_show.html", run=run, state=run_state(run), form=EmptyForm())


@bp.get("/<int:task_run_id>/status")
@login_required_any
def run_status(task_run_id: int) -> Any:
    response = jsonify(run_state(_visible_run(task_run_id)))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/<int:task_run_id>/retry")
@login_required_any
def run_retry(task_run_id: int) -> Any:
    if not EmptyForm().validate_on_submit():
        abort(400, "Форма устарела: обновите страницу и попробуйте ещё раз.")
    db = get_db()
    run = _visible_run(task_run_id)
    if retry_run(db, run):
        db.commit()
        flash("Задача снова в очереди.", "success")
    return redirect(url_for("tasks.run_show", task_run_id=run.id))
