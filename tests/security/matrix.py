"""Who may do what: the expected answer of every URL of the portal for every kind of person.

This table is written by hand from the published roles (DESIGN.md «Who uses it»), not read from the code's
decorators, so that a view that loses or changes its guard makes a test fail. A new URL fails
`test_the_matrix_covers_every_rule` until someone decides here who may use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from werkzeug.routing import Map, Rule

from portal.notices.service import unsubscribe_token
from tests.security.world import World

OWNER = frozenset({"owner"})
ACCOUNTING = frozenset({"owner", "accountant"})
ANY_ROLE = frozenset({"owner", "accountant", "member"})


@dataclass(frozen=True)
class Access:
    kind: str  # public | signed-in | roles | staff | service | session-json | webhook | home | account-object
    roles: frozenset[str] = frozenset()
    ok: frozenset[int] = frozenset({200})  # what a GET that is allowed answers
    query: str = ""  # what a real link to the page carries


PUBLIC = Access("public")
STAFF = Access("staff")
SERVICE = Access("service")

EXPECTED: dict[str, Access] = {
    # Sign-in pages: open to all; the code and registration steps send anyone without a pending sign-in back.
    "accounts.login": Access("public", ok=frozenset({200, 302})),
    "accounts.code": Access("public", ok=frozenset({302})),
    "accounts.register": Access("public", ok=frozenset({302})),
    "accounts.logout": Access("signed-in"),
    "accounts.account_switch": Access("signed-in"),
    # The person's own profile: theirs whatever their role, and it names no company's object.
    "accounts.profile": Access("signed-in"),
    "accounts.sessions_end": Access("signed-in"),
    "accounts.account_leave": Access("signed-in"),
    "index": Access("home"),
    # Prices are public (the widgets on the vendor's site use them).
    "api.plans": PUBLIC,
    "api.quote_view": Access("public", query="?plan=users-12&months=9"),
    "api.limits_current": Access("session-json", ANY_ROLE),
    # The messenger backend's API: a service token, never a browser session.
    "api.account_limits": SERVICE,
    "api.account_storage_update": SERVICE,
    "api.account_users_list": SERVICE,
    "api.account_user_add": SERVICE,
    "api.account_user_deactivate": SERVICE,
    "api.account_user_reactivate": SERVICE,
    "billing.plans": PUBLIC,
    "billing.license": PUBLIC,
    "billing.license_version": PUBLIC,
    "billing.checkout": Access("roles", ACCOUNTING, query="?plan=users-24&months=12"),
    "billing.order_cancel": Access("roles", ACCOUNTING),
    # The page states the consequence to both; only the owner's confirmation cancels (the accountant's POST is 403).
    "billing.scheduled_cancel": Access("roles", ACCOUNTING),
    "billing.scheduled_cancel_confirm": Access("roles", OWNER),
    "payments.payment_list": Access("roles", ACCOUNTING),
    "payments.payment_return": Access("roles", ACCOUNTING),
    "payments.payment_status": Access("roles", ACCOUNTING),
    # The СБП waiting page; the world's order is paid by card, so it hands over to the return page.
    "payments.sbp_show": Access("roles", ACCOUNTING, ok=frozenset({302})),
    "payments.payment_retry": Access("roles", OWNER),
    "payments.refund_request": Access("roles", OWNER),
    "payments.autopay_cancel": Access("roles", OWNER),
    "payments.autopay_method_remove": Access("roles", OWNER),
    "payments.webhook": Access("webhook"),
    # The sandbox acquirer stands for somebody else's site: anyone holding the payment's random id sees its page.
    "sandbox.payment_pay": PUBLIC,
    "sandbox.receipt_show": Access("public", ok=frozenset({404})),  # no receipt before the payment is made
    # The «bank app» a scanned СБП code opens: another site's page, as the card one.
    "sandbox.sbp_pay": PUBLIC,
    # Notices: each owner or accountant chooses their letters; an unsubscribe link works without signing in, and
    # only with a token the portal signed (tests/notices: a made-up one is a 404).
    "notices.settings": Access("roles", ACCOUNTING),
    "notices.unsubscribe": PUBLIC,
    "documents.document_list": Access("roles", ACCOUNTING),
    "documents.requisites_edit": Access("roles", ACCOUNTING),
    "documents.invoice_view": Access("roles", ACCOUNTING),
    "documents.invoice_download": Access("roles", ACCOUNTING),
    "documents.upd_download": Access("roles", ACCOUNTING),
    "documents.correction_download": Access("roles", ACCOUNTING),
    "documents.archive_download": Access("roles", ACCOUNTING, query="?period=2026-Q4"),
    "accountant.reconciliation_download": Access("roles", ACCOUNTING, query="?period=2026-Q4&format=pdf"),
    "accountant.edo_resend": Access("roles", ACCOUNTING),
    # The accountant's own companies only (the page names no object); anyone signed in may look at theirs.
    "accountant.attention_list": Access("signed-in"),
    "accountant.edo_rejected_list": STAFF,
    "documents.statement_import": STAFF,
    "seats.team_list": Access("roles", OWNER),
    "seats.user_add": Access("roles", OWNER),
    "seats.user_deactivate": Access("roles", OWNER),
    "seats.user_reactivate": Access("roles", OWNER),
    "seats.user_role_change": Access("roles", OWNER),
    "crm.connection_show": Access("roles", OWNER),
    "crm.connection_start": Access("roles", OWNER),
    # Without the CRM's code the callback is a bad request, for the owner too.
    "crm.connection_callback": Access("roles", OWNER, ok=frozenset({400})),
    "crm.connection_disconnect": Access("roles", OWNER),
    "crm.sync_run": Access("roles", OWNER),
    "crm.run_show": Access("roles", OWNER),
    "crm.outbox_retry": Access("roles", OWNER),
    "crm.outbox_cancel": Access("roles", OWNER),
    "crm.outbox_email": Access("roles", OWNER),
    "crm.pending_import": Access("roles", OWNER),
    "support.request_new": Access("roles", OWNER),
    "support.queue": STAFF,
    "support.account_search": Access("staff", query="?q=ООО"),
    "support.account_show": STAFF,
    "support.audit_list": STAFF,
    "support.custom_plan_new": STAFF,
    "support.document_resend": STAFF,
    "support.file_download": STAFF,
    "support.invoice_cancel": STAFF,
    "support.invoice_pay": STAFF,
    "support.order_refund_rights": STAFF,
    "support.line_show": STAFF,
    "support.line_link": STAFF,
    "support.line_dismiss": STAFF,
    "support.line_credit": STAFF,
    "support.money_list": STAFF,
    "support.receipt_resolve": STAFF,
    "support.refund_provider": STAFF,
    "support.refund_done": STAFF,
    "support.refund_cancel": STAFF,
    "support.account_refund": STAFF,
    "support.request_show": STAFF,
    "support.request_take": STAFF,
    "support.request_resolve": STAFF,
    "support.statement_list": STAFF,
    "support.trial_start": STAFF,
    # Background work (an import, a sync): its account's people, whatever their role, and staff; others get 404.
    "tasks.run_show": Access("account-object"),
    "tasks.run_status": Access("account-object"),
    "tasks.run_retry": Access("account-object"),
    "static": PUBLIC,
}

# URL parameters that do not name an account's object.
FIXED = {
    "fmt": "pdf",
    "provider_name": "sandbox",
    "version": "2026-01",
    "filename": "css/portal.css",
    "kind": "invoice",
    "doc_kind": "ukd",
}
# Objects named by an id that is not checked against the account before the form is (the CRM's own user id):
# the stranger's request with another account's id must change nothing, which the POST test checks.
FORM_FIRST = {"crm.pending_import"}

_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def methods(rule: Rule) -> set[str]:
    return set(rule.methods or ()) - {"HEAD", "OPTIONS"}


def names_object(rule: Rule) -> bool:
    """The URL names one account's object (so another account's people must get 404)."""
    return any(arg not in FIXED and arg != "payment_id" for arg in rule.arguments)


def url(rule: Rule, world: World, foreign: bool = False) -> str:
    objects = world.other if foreign else world.own

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in FIXED:
            return FIXED[name]
        if name == "payment_id":
            return world.sbp_payment if rule.endpoint == "sandbox.sbp_pay" else world.sandbox_payment
        if name == "token":  # the link from a letter to the account's member
            return unsubscribe_token(
                world.app.config["SECRET_KEY"],
                account_id=objects.account_id,
                user_id=int(objects.ids["user_id"]),
                topic="payments",
            )
        if name == "account_id":
            return str(objects.account_id)
        if name == "line_id":
            return str(world.staff_ids["line_id"])
        if name == "document_id":
            return str(objects.ids["invoice_id"])
        return str(objects.ids[name])

    return _PARAM.sub(value, rule.rule) + EXPECTED[rule.endpoint].query


def expected(access: Access, role: str, *, foreign_object: bool) -> str:
    """One of: ok, login, 401, 403, 404, support (staff are sent to their console)."""
    if access.kind in ("public",):
        return "ok"
    if access.kind == "home":
        return {"visitor": "login", "staff": "support"}.get(role, "ok")
    if access.kind == "staff":
        return "ok" if role == "staff" else "404"
    if access.kind == "service":
        return "401"  # a browser session is never a service token
    if access.kind == "signed-in":
        return "login" if role == "visitor" else "ok"
    if access.kind == "account-object":
        if role == "visitor":
            return "login"
        return "404" if foreign_object and role != "staff" else "ok"
    if access.kind == "session-json":
        if role == "visitor":
            return "401"
        if role == "staff":
            return "support"
        return "ok"
    if access.kind == "roles":
        if role == "visitor":
            return "login"
        if role == "staff":
            return "support"
        as_role = "owner" if role == "stranger" else role
        if as_role not in access.roles:
            return "403"
        return "404" if foreign_object else "ok"
    raise AssertionError(f"no rule for {access.kind}")


_URL_MAP: list[Map] = []


def url_map() -> Map:
    """The portal's URL map, read once at collection time so each rule becomes a test of its own."""
    if not _URL_MAP:
        import tempfile

        from portal import create_app

        with tempfile.TemporaryDirectory() as tmp:
            app = create_app({"INSTANCE_PATH": tmp, "SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp}/x.db"})
            app.extensions["portal.db"].engine.dispose()
        _URL_MAP.append(app.url_map)
    return _URL_MAP[0]
