"""The tariff and billing portal: create_app builds the Flask application."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, g, render_template, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from portal import db as database
from portal import tasks
from portal.config import load_config
from portal.models import module_exists

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)
login_manager = LoginManager()

# Feature packages in the order their blueprints are registered; each is optional until it is built.
FEATURES = ("accounts", "billing", "payments", "documents", "seats", "support", "api", "tasks", "notices")
# Parts of a feature package that own a blueprint of their own (views.py / cli.py / startup.py), registered after it.
# A feature's tasks.py (background and periodic work) is imported here too, so every process (server or worker)
# knows every task by name.
SUBFEATURES = ("seats.crm", "documents.accountant")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


class DatabaseIdConverter(IntegerConverter):
    """`<int:…>` in URLs: ids are INTEGER columns, so a number beyond 2³¹ − 1 names no object and is a 404 — not
    an "integer out of range" from PostgreSQL (or an OverflowError from SQLite past 2⁶³) turned into a 500."""

    def __init__(self, map: Any, fixed_digits: int = 0, min: int | None = None, max: int | None = 2**31 - 1) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    overrides = dict(config or {})
    app = Flask(
        __name__,
        instance_relative_config=True,
        # The instance folder (local database, secret key, documents, the demo CRM's state) may live elsewhere than
        # beside the code: a second demo, a test, a read-only install.
        instance_path=overrides.pop("INSTANCE_PATH", None) or os.environ.get("INSTANCE_PATH") or None,
        template_folder="../templates",
        static_folder="../static",
    )
    # The local database, documents and generated secret live here; a fresh INSTANCE_PATH must simply work.
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(load_config(app.instance_path, overrides))
    app.url_map.converters["int"] = DatabaseIdConverter
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # WeasyPrint and fontTools narrate every render step at INFO; only their problems matter here.
    # Alembic narrates its plugins and each migration step on every CLI start; `db upgrade` says when it is done.
    for noisy in ("weasyprint", "weasyprint.progress", "fontTools", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    if app.config["PROXY_FIX_HOPS"]:
        hops = app.config["PROXY_FIX_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    database.init_app(app)
    tasks.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = "Войдите, чтобы продолжить."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"
    # Flask-Login hashes the first X-Forwarded-For entry, which a client writes itself; ProxyFix (PROXY_FIX_HOPS)
    # has already put the address the trusted proxies saw into remote_addr, so that is what the session is bound to.
    login_manager._session_identifier_generator = _session_identifier

    from portal import web

    web.init_app(app)

    for feature in (*FEATURES, *SUBFEATURES):
        for module_name in (f"portal.{feature}.views", f"portal.{feature}.cli", f"portal.{feature}.tasks"):
            if not module_exists(module_name):
                continue
            module = importlib.import_module(module_name)
            if hasattr(module, "bp"):
                app.register_blueprint(module.bp)
            if hasattr(module, "init_app"):
                module.init_app(app)

    from portal import cli, dashboard

    dashboard.init_app(app)
    cli.init_app(app)
    _startup_checks(app)
    return app


def _startup_checks(app: Flask) -> None:
    """Feature packages may validate their settings at start-up (e.g. the seller's requisites)."""
    for feature in (*FEATURES, *SUBFEATURES):
        name = f"portal.{feature}.startup"
        if module_exists(name):
            importlib.import_module(name).check(app.config)


def _session_identifier() -> str:
    import hashlib

    agent = request.headers.get("User-Agent", "")
    return hashlib.sha512(f"{request.remote_addr or ''}|{agent}".encode()).hexdigest()


@login_manager.user_loader
def _load_user(user_id: str) -> Any:
    from flask import current_app, session

    from portal.accounts.service import load_session_user

    if not (user_id.isascii() and user_id.isdigit() and len(user_id) < 10):
        return None
    return load_session_user(
        database.get_db(),
        user_id=int(user_id),
        token=session.get("sid", ""),
        now=database.utcnow(),
        max_age=current_app.permanent_session_lifetime,
    )


def _error_page(code: int, title: str, text: str) -> Any:
    wants_json = request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"
    if wants_json:
        return {"error": text}, code
    # An error page is no place for the over-limit dialog (portal.seats.views reads this).
    g.error_page = True
    return render_template("error.html", code=code, title=title, text=text), code


def register_error_pages(app: Flask) -> None:
    @app.errorhandler(400)
    def bad_request(e: Any) -> Any:
        return _error_page(400, "Неверный запрос", getattr(e, "description", None) or "Запрос не понят.")

    @app.errorhandler(CSRFError)
    def csrf_error(_e: Any) -> Any:
        return _error_page(
            400,
            "Форма устарела",
            "Страница была открыта слишком давно или форма отправлена не с нашего сайта. "
            "Обновите страницу и отправьте форму ещё раз.",
        )

    @app.errorhandler(403)
    def forbidden(_e: Any) -> Any:
        return _error_page(403, "Нет доступа", "У вашей роли в этой компании нет доступа к этой странице.")

    @app.errorhandler(404)
    def not_found(_e: Any) -> Any:
        return _error_page(404, "Страница не найдена", "Такой страницы нет, или она вам недоступна.")

    @app.errorhandler(405)
    def method_not_allowed(_e: Any) -> Any:
        return _error_page(405, "Действие не поддерживается", "Этот адрес не принимает такой запрос.")

    @app.errorhandler(413)
    def too_large(_e: Any) -> Any:
        limit_mb = app.config["MAX_UPLOAD_BYTES"] // (1024 * 1024)
        return _error_page(413, "Файл слишком большой", f"Можно загрузить файл не больше {limit_mb} МБ.")

    @app.errorhandler(429)
    def too_many(e: Any) -> Any:
        # A limit with an on_breach page of its own (the checkout) keeps it; this text is about sign-in codes.
        if getattr(e, "response", None) is not None:
            return e.response
        return _error_page(
            429,
            "Слишком много запросов",
            "Вы слишком часто запрашиваете код. Подождите немного и попробуйте снова.",
        )

    @app.errorhandler(500)
    def server_error(_e: Any) -> Any:
        return _error_page(500, "Ошибка на нашей стороне", "Мы уже знаем о ней. Попробуйте повторить через минуту.")


__all__ = ["create_app", "csrf", "limiter", "login_manager", "current_user", "CSP"]
