"""The account's home page `/`: what the company has, and the next step that fits."""

from __future__ import annotations

from typing import Any

from flask import Flask, redirect, render_template, url_for
from flask_login import current_user

from portal.accounts.access import current_membership, public


@public
def index() -> Any:
    if not current_user.is_authenticated:
        return redirect(url_for("accounts.login"))
    membership = current_membership()
    if membership is None:
        if current_user.is_staff and "support.queue" in _views():
            return redirect(url_for("support.queue"))
        return render_template("dashboard_empty.html")
    return render_template("dashboard.html", account=membership.account)


def _views() -> dict[str, Any]:
    from flask import current_app

    return current_app.view_functions


def init_app(app: Flask) -> None:
    app.add_url_rule("/", "index", index)
