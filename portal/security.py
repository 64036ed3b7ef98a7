"""Security on every response and request: the Content-Security-Policy and friends, addresses with unreadable
characters refused, and the sign-in session bound to the client's address and browser."""

from __future__ import annotations

import hashlib

from flask import Flask, Response, abort, request

from portal.textinput import text_problem

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


def init_app(app: Flask) -> None:
    app.before_request(refuse_unreadable_query)

    @app.after_request
    def _security_headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        if app.config["PORTAL_ENV"] == "production":
            resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return resp


def refuse_unreadable_query() -> None:
    """A NUL or control character in the address (a search, a filter) is a clear 400, never a 500 from the
    database; forms and the API check their own bodies, at the field."""
    for key, value in request.args.items(multi=True):
        if text_problem(key) or text_problem(value, max_length=2000):
            abort(400, "В адресе страницы недопустимые символы или слишком длинное значение. Проверьте ссылку.")


def session_identifier() -> str:
    """What a sign-in session is bound to. Flask-Login hashes the first X-Forwarded-For entry, which a client writes
    itself; ProxyFix (PROXY_FIX_HOPS) has already put the address the trusted proxies saw into remote_addr."""
    agent = request.headers.get("User-Agent", "")
    return hashlib.sha512(f"{request.remote_addr or ''}|{agent}".encode()).hexdigest()
