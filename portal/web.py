"""What every page shares: template filters and the header's context (who is signed in, in which company)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_login import current_user

from portal.accounts.access import current_membership
from portal.accounts.phone import format_phone
from portal.accounts.service import list_memberships
from portal.db import get_db
from portal.money import format_amount, format_rub
from portal.nav import nav_for
from portal.textinput import quoted
from portal.timeutil import format_date, format_date_ru, format_datetime


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(
        rub=format_rub,
        amount=format_amount,
        date_ru=format_date_ru,
        date=format_date,
        datetime=format_datetime,
        phone=format_phone,
        quoted=quoted,
    )
    # Every blueprint is registered in create_app; templates that still ask (billing's plans, support's request
    # form, the payments pages) get a plain answer until their guards are dropped.
    app.jinja_env.globals["has_endpoint"] = lambda name: name in app.view_functions

    @app.context_processor
    def _header_context() -> dict[str, Any]:
        membership = current_membership() if current_user.is_authenticated else None
        memberships = list_memberships(get_db(), current_user) if current_user.is_authenticated else []
        return {
            "membership": membership,
            "current_account": membership.account if membership else None,
            "my_memberships": memberships,
            "nav_items": nav_for(
                membership.role if membership else None,
                bool(current_user.is_authenticated and current_user.is_staff),
            ),
            "support_phone": app.config["SUPPORT_PHONE"],
            "support_email": app.config["SUPPORT_EMAIL"],
        }
