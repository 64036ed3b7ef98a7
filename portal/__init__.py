"""The tariff and billing portal: create_app builds the Flask application."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, session
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from portal import cli, dashboard, errors, security, tasks, web
from portal import db as database
from portal.accounts import views as accounts_views
from portal.accounts.service import load_session_user
from portal.api import views as api_views
from portal.billing import checkout as billing_checkout
from portal.billing import signals as billing_signals
from portal.billing import startup as billing_startup
from portal.billing import tasks as billing_tasks
from portal.billing import views as billing_views
from portal.config import load_config
from portal.documents import startup as documents_startup
from portal.documents import tasks as documents_tasks
from portal.documents import views as documents_views
from portal.documents.accountant import views as accountant_views
from portal.extensions import csrf, limiter, login_manager
from portal.notices import tasks as notices_tasks
from portal.notices import views as notices_views
from portal.payments import autopay, renewals
from portal.payments import recheck as payments_recheck
from portal.payments import startup as payments_startup
from portal.payments import tasks as payments_tasks
from portal.payments import views as payments_views
from portal.seats import views as seats_views
from portal.seats.crm import outbox
from portal.seats.crm import startup as crm_startup
from portal.seats.crm import tasks as crm_tasks
from portal.seats.crm import views as crm_views
from portal.seats.events import register_membership_listener
from portal.support import startup as support_startup
from portal.support import views as support_views
from portal.tasks import views as tasks_views

# Every process (server or worker) must know every background and periodic task by name: a feature's tasks module
# registers its tasks with the queue when it is imported, which is why these are imported here.
TASK_MODULES = (billing_tasks, payments_tasks, documents_tasks, notices_tasks, crm_tasks)
# The features' blueprints, registered in this order.
BLUEPRINTS = (
    accounts_views.bp,
    billing_views.bp,
    payments_views.bp,
    documents_views.bp,
    seats_views.bp,
    support_views.bp,
    api_views.bp,
    tasks_views.bp,
    notices_views.bp,
    crm_views.bp,
    accountant_views.bp,
)
# Features that validate their settings at start-up (e.g. the seller's requisites): each `check(config)` raises.
STARTUP_CHECKS = (
    billing_startup.check,
    payments_startup.check,
    documents_startup.check,
    support_startup.check,
    crm_startup.check,
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
    _init_login(app)
    web.init_app(app)
    errors.init_app(app)
    security.init_app(app)

    # Team changes reach the CRM: the outbox hears every membership change (seats.events.membership_changed).
    register_membership_listener(outbox.on_membership_event)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    billing_views.init_app(app)  # billing's template filters
    payments_views.init_app(app)  # the sandbox provider's pages, when it is the provider
    _connect_features()
    dashboard.init_app(app)
    cli.init_app(app)
    for check in STARTUP_CHECKS:
        check(app.config)
    return app


def _connect_features() -> None:
    """Flows that cross features, in one place: what the checkout offers and who does their part of the tick.

    Billing knows nothing of payments or documents (DESIGN): they provide the payment handlers and listen to the
    tick; the order below is the order the tick runs them in (payments settle before documents form paper)."""
    billing_checkout.set_checkout_options(
        [
            billing_checkout.CheckoutOption("card", payments_views.CARD_TITLE, payments_views.checkout_handler),
            billing_checkout.CheckoutOption(
                "sbp", payments_views.SBP_TITLE, payments_views.sbp_checkout_handler, pays_as="card"
            ),
            billing_checkout.CheckoutOption(
                "invoice",
                documents_views.INVOICE_TITLE,
                documents_views.invoice_checkout,
                documents_views.invoice_precheck,
            ),
        ]
    )
    for receiver in (
        payments_recheck.recheck_pending,
        renewals.tick_hook,
        payments_views.settle_opened_card_orders,
        documents_views.upd_tick_hook,
        documents_views.scheduled_invoices_tick_hook,
    ):
        billing_signals.tick_done.connect(receiver)
    billing_signals.grace_asked.connect(autopay.grace_reason)


def _init_login(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = "Войдите, чтобы продолжить."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"
    login_manager._session_identifier_generator = security.session_identifier
    login_manager.user_loader(_load_user)


def _load_user(user_id: str) -> Any:
    if not (user_id.isascii() and user_id.isdigit() and len(user_id) < 10):
        return None
    return load_session_user(
        database.get_db(),
        user_id=int(user_id),
        token=session.get("sid", ""),
        now=database.utcnow(),
        max_age=current_app.permanent_session_lifetime,
    )


__all__ = ["create_app"]
