"""Limits, storage and users API for the messenger backend (service token) and the signed-in portal user (session)."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, jsonify, request
from flask_login import current_user

from portal.accounts.access import public, require_account, roles_required
from portal.api.views import bp
from portal.db import get_db, utcnow
from portal.seats.errors import AccountNotFound, MembershipError
from portal.seats.limits import get_limits
from portal.seats.members import add_user, deactivate_user, reactivate_user
from portal.seats.queries import list_users, snapshot
from portal.seats.storage import InvalidStorageValue, set_storage_used
from portal.textinput import find_bad_text

SOURCE = "messenger"
USER_STATUSES = ("active", "deactivated")


def _json(payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    resp = jsonify(payload)
    resp.status_code = status
    # Per-account data: never cached by a proxy or the client.
    resp.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _error(status: int, message: str, **extra: Any) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="messenger"'} if status == 401 else None
    return _json({"error": message, **{k: v for k, v in extra.items() if v is not None}}, status, headers)


def _membership_error(exc: MembershipError) -> Response:
    get_db().rollback()
    return _error(exc.status_code, exc.message, field=exc.field)


def _token_ok() -> bool:
    expected = current_app.config.get("MESSENGER_API_TOKEN") or ""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    # Constant time, so the token cannot be guessed byte by byte from response times.
    return hmac.compare_digest(token.strip().encode(), expected.encode())


def service_token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """The messenger backend's bearer token from MESSENGER_API_TOKEN; anything else gets 401 JSON."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not _token_ok():
            return _error(401, "Нужен действующий сервисный токен: заголовок Authorization: Bearer <токен>.")
        return view(*args, **kwargs)

    return wrapped


def _json_session_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """A visitor gets 401 JSON instead of the sign-in page's redirect (the rest is roles_required's job)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return _error(401, "Войдите в кабинет, чтобы увидеть лимиты компании.")
        return view(*args, **kwargs)

    return wrapped


class _BadBody(ValueError):
    pass


def _json_object() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise _BadBody("Ожидается JSON-объект в теле запроса (Content-Type: application/json).")
    bad = find_bad_text(data)
    if bad is not None:
        raise _BadBody(f"{bad[0]}: {bad[1]}")
    return data


def _limits_json(account_id: int) -> dict[str, Any]:
    return get_limits(get_db(), account_id, utcnow()).as_json()


# --- messenger backend (service token) ------------------------------------------------------------------------


@bp.get("/accounts/<int:account_id>/limits")
@public
@service_token_required
def account_limits(account_id: int) -> Response:
    try:
        return _json(_limits_json(account_id))
    except AccountNotFound as exc:
        return _error(404, exc.message)


@bp.put("/accounts/<int:account_id>/storage")
@public
@service_token_required
def account_storage_update(account_id: int) -> Response:
    db = get_db()
    try:
        body = _json_object()
        if "used_bytes" not in body:
            raise _BadBody("Укажите used_bytes — сколько байт занимают файлы компании.")
        set_storage_used(db, account_id=account_id, used_bytes=body["used_bytes"])
    except (_BadBody, InvalidStorageValue) as exc:
        db.rollback()
        return _error(400, str(exc), field="used_bytes" if isinstance(exc, InvalidStorageValue) else None)
    except AccountNotFound as exc:
        db.rollback()
        return _error(404, exc.message)
    db.commit()
    return _json(_limits_json(account_id))


@bp.get("/accounts/<int:account_id>/users")
@public
@service_token_required
def account_users_list(account_id: int) -> Response:
    status = request.args.get("status") or None
    if status is not None and status not in USER_STATUSES:
        return _error(400, "status может быть active или deactivated.", field="status")
    try:
        users = list_users(get_db(), account_id, status=status)
    except MembershipError as exc:
        return _membership_error(exc)
    return _json({"account_id": account_id, "users": [u.as_json() for u in users]})


@bp.post("/accounts/<int:account_id>/users")
@public
@service_token_required
def account_user_add(account_id: int) -> Response:
    db = get_db()
    try:
        body = _json_object()
    except _BadBody as exc:
        return _error(400, str(exc))
    try:
        result = add_user(
            db,
            account_id=account_id,
            phone=body.get("phone"),  # type: ignore[arg-type]  # validated by the membership
            name=body.get("name"),  # type: ignore[arg-type]
            email=body.get("email"),
            role=body.get("role", "member"),
            source=SOURCE,
            now=utcnow(),
        )
    except MembershipError as exc:
        return _membership_error(exc)
    user = snapshot(db, result.membership)
    db.commit()
    return _json(
        {"user": user.as_json(), "created": result.created, "limits": _limits_json(account_id)},
        201 if result.created else 200,
    )


def _status_change(account_id: int, user_id: int, change: Callable[..., Any]) -> Response:
    db = get_db()
    try:
        membership = change(db, account_id=account_id, user_id=user_id, source=SOURCE, now=utcnow())
    except MembershipError as exc:
        return _membership_error(exc)
    user = snapshot(db, membership)
    db.commit()
    return _json({"user": user.as_json(), "limits": _limits_json(account_id)})


@bp.post("/accounts/<int:account_id>/users/<int:user_id>/deactivate")
@public
@service_token_required
def account_user_deactivate(account_id: int, user_id: int) -> Response:
    return _status_change(account_id, user_id, deactivate_user)


@bp.post("/accounts/<int:account_id>/users/<int:user_id>/reactivate")
@public
@service_token_required
def account_user_reactivate(account_id: int, user_id: int) -> Response:
    return _status_change(account_id, user_id, reactivate_user)


# --- the signed-in portal user (session) ------------------------------------------------------------------------


@bp.get("/limits")
@_json_session_required
@roles_required()
def limits_current() -> Response:
    return _json(_limits_json(require_account().id))
