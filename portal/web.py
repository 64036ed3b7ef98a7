"""What every page shares: template filters, the header's context, security headers, error pages."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from flask_login import current_user

from portal.money import format_amount, format_rub
from portal.textinput import quoted


def init_app(app: Flask) -> None:
    from portal import CSP, register_error_pages
    from portal.accounts.phone import format_phone
    from portal.timeutil import format_date, format_date_ru, format_datetime

    app.jinja_env.filters.update(
        rub=format_rub,
        amount=format_amount,
        date_ru=format_date_ru,
        date=format_date,
        datetime=format_datetime,
        phone=format_phone,
        quoted=quoted,
    )
    app.jinja_env.globals["has_endpoint"] = lambda name: name in app.view_functions
    register_error_pages(app)

    @app.context_processor
    def _header_context() -> dict[str, Any]:
        from portal.accounts.access import current_membership
        from portal.accounts.service import list_memberships
        from portal.db import get_db
        from portal.nav import nav_for

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

    @app.before_request
    def _refuse_unreadable_query() -> None:
        """A NUL or control character in the address (a search, a filter) is a clear 400, never a 500 from the
        database; forms and the API check their own bodies, at the field."""
        from flask import abort, request

        from portal.textinput import text_problem

        for key, value in request.args.items(multi=True):
            if text_problem(key) or text_problem(value, max_length=2000):
                abort(400, "В адресе страницы недопустимые символы или слишком длинное значение. Проверьте ссылку.")

    @app.after_request
    def _security_headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        if app.config["PORTAL_ENV"] == "production":
            resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return resp
