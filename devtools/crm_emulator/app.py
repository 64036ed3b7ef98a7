"""The local amoCRM over HTTP: a small Flask app with amoCRM's API paths, its OAuth pages and an admin page.

`create_app(emulator)` serves one `Emulator`'s state; `running_emulator` and `serve` run it in a thread. The admin
page has no login and no CSRF token: serve it on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, redirect, render_template, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .emulator import (
    CODE_TTL_SECONDS,
    EMAIL_RE,
    MAX_API_USERS,
    MAX_CREATE_BATCH,
    MAX_NAME_LENGTH,
    MAX_PAGE_LIMIT,
    MAX_STATUS_BATCH,
    NAME_RE,
    Emulator,
    EmulatorError,
    Fault,
    RequestRecord,
    email_taken,
    new_user,
    token_hash,
)

bp = Blueprint("crm_emulator", __name__, template_folder="templates")


def create_app(emulator: Emulator) -> Flask:
    app = Flask(__name__, static_folder=None)
    # As werkzeug's plain URL map did: a method a path does not take is a 405 problem, OPTIONS included.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.extensions["crm_emulator"] = emulator
    app.register_blueprint(bp)
    app.register_error_handler(404, lambda _e: _problem(404, "Not Found", "Нет такого адреса"))
    app.register_error_handler(405, lambda _e: _problem(405, "Method Not Allowed", "Метод не поддерживается"))
    return app


def _emulator() -> Emulator:
    return current_app.extensions["crm_emulator"]


# ----- the API: every request meets the fault knobs, then is recorded for the tests -----


def api(view: Callable[[Emulator], Response]) -> Callable[[], Response]:
    @functools.wraps(view)
    def wrapper() -> Response:
        emulator = _emulator()
        body = request.get_json(silent=True) if request.method == "POST" else None
        response = _answer(emulator, view, emulator.next_fault())
        emulator.record(
            RequestRecord(request.method, request.path, request.query_string.decode(), response.status_code, body)
        )
        return response

    return wrapper


def _answer(emulator: Emulator, view: Callable[[Emulator], Response], fault: Fault | None) -> Response:
    if emulator.down:
        return Response("Service Unavailable", status=503, mimetype="text/plain")
    if fault is not None and fault.kind == "rate_limit":
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return Response(
            "<html><body><h1>429 Too Many Requests</h1></body></html>",
            status=429,
            mimetype="text/html",
            headers=headers,
        )
    if fault is not None and fault.kind == "fail":
        return _problem(fault.status, "Server Error", "Внутренняя ошибка CRM")
    if (fault is not None and fault.kind == "unauthorized") or not emulator.authorized(
        request.headers.get("Authorization", "")
    ):
        return _problem(401, "Unauthorized", "Токен доступа недействителен или истёк")
    if emulator.blocked:
        return _problem(402, "Payment Required", "Аккаунт заблокирован или не оплачен")
    response = view(emulator)
    if fault is None:
        return response
    if fault.kind == "fail_after":
        return _problem(fault.status, "Server Error", "Внутренняя ошибка CRM")
    if fault.kind == "malformed":
        return Response('{"_page": 1, "_embedded": {"users": [{"id": 1,', mimetype="application/hal+json")
    if fault.kind == "bad_shape":
        return _json_response({"_page": 1, "_links": {}})
    return response


@bp.get("/api/v4/account")
@api
def api_account(emulator: Emulator) -> Response:
    with emulator.state() as data:
        account = data["account"]
        admin = next((u for u in data["users"] if u["is_admin"]), None)
        body: dict[str, Any] = {
            "id": account["id"],
            "name": account["name"],
            "subdomain": account["subdomain"],
            "current_user_id": admin["id"] if admin else None,
            "country": "RU",
            "currency": "RUB",
            "currency_symbol": "₽",
            "customers_mode": "disabled",
            "is_unsorted_on": True,
            "is_technical_account": False,
            "_links": {"self": {"href": f"{request.host_url}api/v4/account"}},
        }
        if "users_groups" in _with():
            body["_embedded"] = {
                "users_groups": [{"id": g["id"], "name": g["name"], "uuid": None} for g in data["groups"]]
            }
    return _json_response(body)


@bp.route("/api/v4/users", methods=["GET", "POST"])
@api
def api_users(emulator: Emulator) -> Response:
    if request.method == "POST":
        return _create_users(emulator)
    try:
        page = int(request.args.get("page", "1"))
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        return _problem(400, "Bad Request", "Параметры page и limit должны быть числами")
    if page < 1 or not 1 <= limit <= MAX_PAGE_LIMIT:
        return _problem(400, "Bad Request", f"limit должен быть от 1 до {MAX_PAGE_LIMIT}, page от 1")
    with_ = _with()
    with emulator.state() as data:
        users = sorted(data["users"], key=lambda u: u["id"])
        chunk = users[(page - 1) * limit : page * limit]
        if not chunk:
            return Response(status=204)
        groups = {g["id"]: g for g in data["groups"]}
        items = [_user_json(u, request.host_url, with_, groups) for u in chunk]
    total = len(users)
    pages = (total + limit - 1) // limit

    def href(p: int) -> dict[str, str]:
        query = {"page": p, "limit": limit}
        if with_:
            query["with"] = ",".join(with_)  # type: ignore[assignment]
        return {"href": f"{request.host_url}api/v4/users?{urlencode(query)}"}

    links = {"self": href(page), "first": href(1)}
    if page < pages:
        links["next"] = href(page + 1)
    if page > 1:
        links["prev"] = href(page - 1)
    return _json_response(
        {"_total_items": total, "_page": page, "_page_count": pages, "_links": links, "_embedded": {"users": items}}
    )


def _create_users(emulator: Emulator) -> Response:
    payload = request.get_json(silent=True)
    if not isinstance(payload, list) or not payload:
        return _problem(400, "Bad Request", "Ожидается непустой JSON-массив пользователей")
    if len(payload) > MAX_CREATE_BATCH:
        return _problem(400, "Bad Request", f"За один запрос можно добавить не больше {MAX_CREATE_BATCH} пользователей")
    with emulator.state(write=True) as data:
        errors = []
        seen: set[str] = set()
        group_ids = {g["id"] for g in data["groups"]}
        for index, item in enumerate(payload):
            item_errors = _validate_new_user(item, data, seen, group_ids)
            if item_errors:
                errors.append({"request_id": str(index), "errors": item_errors})
        if errors:
            return _problem(400, "Bad Request", "Данные пользователей не прошли проверку", errors)
        if len(data["users"]) > MAX_API_USERS:
            return _problem(
                403,
                "Forbidden",
                f"Добавление пользователей через API недоступно: в аккаунте больше {MAX_API_USERS} "
                f"пользователей ({len(data['users'])})",
            )
        active = sum(1 for u in data["users"] if u["is_active"])
        if emulator.plan_limit is not None and active + len(payload) > emulator.plan_limit:
            return _problem(
                400,
                "Bad Request",
                f"Превышен лимит пользователей тарифа CRM: разрешено {emulator.plan_limit}, "
                f"активных {active}, добавляется {len(payload)}",
            )
        created = []
        for item in payload:
            rights = item.get("rights") or {}
            created.append(
                new_user(
                    data,
                    item["name"].strip(),
                    item["email"].strip(),
                    None,
                    rights.get("group_id") or 0,
                    bool(rights.get("is_free", False)),
                    bool(rights.get("is_admin", False)),
                )
            )
        groups = {g["id"]: g for g in data["groups"]}
        items = [_user_json(u, request.host_url, {"group"}, groups) for u in created]
    return _json_response({"_total_items": len(items), "_embedded": {"users": items}})


@bp.post("/api/v4/users/deactivate")
@api
def api_deactivate(emulator: Emulator) -> Response:
    return _set_status(emulator, active=False)


@bp.post("/api/v4/users/activate")
@api
def api_activate(emulator: Emulator) -> Response:
    return _set_status(emulator, active=True)


def _set_status(emulator: Emulator, *, active: bool) -> Response:
    payload = request.get_json(silent=True)
    if not isinstance(payload, list) or not payload or len(payload) > MAX_STATUS_BATCH:
        return _problem(400, "Bad Request", f'Ожидается JSON-массив из 1–{MAX_STATUS_BATCH} объектов вида {{"id": …}}')
    with emulator.state(write=True) as data:
        by_id = {u["id"]: u for u in data["users"]}
        errors = []
        targets = []
        for index, item in enumerate(payload):
            user_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(user_id, int) or user_id not in by_id:
                errors.append(_field_error(index, "id", "NotFound", f"Пользователь {user_id} не найден"))
                continue
            targets.append(by_id[user_id])
        if errors:
            return _problem(400, "Bad Request", "Данные запроса не прошли проверку", errors)
        if not active:
            admins = [u for u in targets if u["is_admin"]]
            if admins:
                names = ", ".join(f"{u['name']} (id {u['id']})" for u in admins)
                return _problem(400, "Bad Request", f"Нельзя отключить администратора аккаунта: {names}")
        else:
            waking = sum(1 for u in {u["id"]: u for u in targets}.values() if not u["is_active"])
            active_now = sum(1 for u in data["users"] if u["is_active"])
            if emulator.plan_limit is not None and waking and active_now + waking > emulator.plan_limit:
                return _problem(
                    400,
                    "Bad Request",
                    f"Превышен лимит пользователей тарифа CRM: разрешено {emulator.plan_limit}, "
                    f"активных {active_now}, включается {waking}",
                )
        for user in targets:
            user["is_active"] = active
    return Response(status=202 if active else 204)


# ----- OAuth: the owner's consent page and the token exchange -----


@bp.route("/oauth", methods=["GET", "POST"])
def oauth_authorize() -> Any:
    emulator = _emulator()
    source = request.form if request.method == "POST" else request.args
    client_id = source.get("client_id", "")
    state = source.get("state", "")
    mode = source.get("mode", "post_message")
    integration = emulator.integrations.get(client_id)
    if integration is None:
        return render_template("crm_emulator/oauth_unknown.html", title="Ошибка авторизации"), 400
    if request.method == "GET":
        return render_template(
            "crm_emulator/oauth_consent.html",
            title="Предоставить доступ",
            integration=integration,
            account=emulator.account(),
            client_id=client_id,
            state=state,
            mode=mode,
        )
    params: dict[str, str]
    if request.form.get("decision") == "allow":
        code = secrets.token_urlsafe(24)
        with emulator.state(write=True) as data:
            data["codes"][token_hash(code)] = {"client_id": client_id, "expires_at": emulator.now() + CODE_TTL_SECONDS}
        # amoCRM sends the account's host as "referer"; here it is the emulator's own host.
        params = {"code": code, "state": state, "referer": request.host, "client_id": client_id}
    else:
        params = {"error": "access_denied", "state": state}
    if integration.redirect_uri is None:
        return render_template("crm_emulator/oauth_answer.html", title="Ответ авторизации", params=params)
    separator = "&" if "?" in integration.redirect_uri else "?"
    return redirect(integration.redirect_uri + separator + urlencode(params), 302)


@bp.post("/oauth2/access_token")
def oauth_token() -> Response:
    emulator = _emulator()
    payload = request.get_json(silent=True)
    form: dict[str, Any] = payload if isinstance(payload, dict) else request.form.to_dict()
    integration = emulator.integrations.get(str(form.get("client_id", "")))
    if integration is None or not secrets.compare_digest(str(form.get("client_secret", "")), integration.client_secret):
        return _problem(401, "Unauthorized", "Неверный client_id или client_secret интеграции")
    if integration.redirect_uri is not None and form.get("redirect_uri") != integration.redirect_uri:
        return _problem(400, "Bad Request", "redirect_uri не совпадает с адресом интеграции")
    grant = form.get("grant_type")
    with emulator.state(write=True) as data:
        now = emulator.now()
        data["codes"] = {k: v for k, v in data["codes"].items() if v["expires_at"] > now}
        if grant == "authorization_code":
            record = data["codes"].pop(token_hash(str(form.get("code", ""))), None)
            if record is None or record["client_id"] != integration.client_id:
                return _problem(400, "Bad Request", "Код авторизации недействителен, истёк или уже использован")
        elif grant == "refresh_token":
            # Single-use, as in amoCRM: the old refresh token dies with this exchange.
            record = data["refresh_tokens"].pop(token_hash(str(form.get("refresh_token", ""))), None)
            if record is None or record["client_id"] != integration.client_id:
                return _problem(400, "Bad Request", "Токен обновления недействителен или отозван")
        else:
            return _problem(400, "Bad Request", "grant_type должен быть authorization_code или refresh_token")
        return _json_response(emulator.issue(data, integration.client_id), mimetype="application/json")


# ----- the admin page: users and groups, changed by hand -----


# Any method, as the plain URL map before it answered: the emulator's address opens its admin page.
@bp.route("/", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def index() -> Response:
    return redirect("/_admin", 302)


@bp.get("/_admin")
def admin(error: str | None = None) -> Any:
    emulator = _emulator()
    users, groups = emulator.users(), emulator.groups()
    return render_template(
        "crm_emulator/admin.html",
        title="Эмулятор CRM",
        account=emulator.account(),
        groups=groups,
        group_names={g.id: g.name for g in groups},
        users=users,
        active=sum(1 for u in users if u.is_active),
        plan_limit=emulator.plan_limit,
        error=error,
        message=request.args.get("msg") if error is None else None,
    ), (400 if error else 200)


@bp.post("/_admin/<action>")
def admin_action(action: str) -> Any:
    emulator, form = _emulator(), request.form
    try:
        if action == "add_user":
            user = emulator.add_user(
                form.get("name", ""),
                form.get("email", ""),
                phone=form.get("phone", "").strip() or None,
                group_id=_form_int(form.get("group_id", "0")),
                is_free=form.get("is_free") == "1",
            )
            message = f"Пользователь {user.name} добавлен"
        elif action == "set_active":
            active = form.get("active") == "1"
            user = emulator.set_active(_form_int(form.get("user_id", "")), active)
            message = f"Пользователь {user.name} {'включён' if active else 'отключён'}"
        elif action == "move_user":
            user = emulator.move_user(_form_int(form.get("user_id", "")), _form_int(form.get("group_id", "")))
            message = f"Пользователь {user.name} переведён в другой отдел"
        elif action == "add_group":
            group = emulator.add_group(form.get("name", ""))
            message = f"Отдел «{group.name}» добавлен"
        elif action == "rename_group":
            group = emulator.rename_group(_form_int(form.get("group_id", "")), form.get("name", ""))
            message = f"Отдел переименован в «{group.name}»"
        else:
            return _problem(404, "Not Found", "Нет такого адреса")
    except EmulatorError as exc:
        return admin(error=str(exc))
    return redirect("/_admin?" + urlencode({"msg": message}), 303)


# ----- helpers -----


def _form_int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise EmulatorError("Ожидалось число") from None


def _with() -> set[str]:
    return {part.strip() for part in request.args.get("with", "").split(",") if part.strip()}


def _json_response(body: Any, status: int = 200, mimetype: str = "application/hal+json") -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=mimetype)


def _problem(status: int, title: str, detail: str, validation_errors: list[dict[str, Any]] | None = None) -> Response:
    body: dict[str, Any] = {
        "title": title,
        "type": f"https://httpstatus.es/{status}",
        "status": status,
        "detail": detail,
    }
    if validation_errors:
        body["validation-errors"] = validation_errors
    return _json_response(body, status=status, mimetype="application/problem+json")


def _field_error(index: int, path: str, code: str, detail: str) -> dict[str, Any]:
    return {"request_id": str(index), "errors": [{"code": code, "path": path, "detail": detail}]}


def _user_json(raw: dict[str, Any], host_url: str, with_: set[str], groups: dict[int, Any]) -> dict[str, Any]:
    full_rights = "A" if raw["is_admin"] else "M"
    entity_rights = {
        "view": "A",
        "edit": full_rights,
        "add": "A",
        "delete": full_rights,
        "export": full_rights,
    }
    body: dict[str, Any] = {
        "id": raw["id"],
        "name": raw["name"],
        "email": raw["email"],
        "lang": raw["lang"],
        "rights": {
            "leads": entity_rights,
            "contacts": entity_rights,
            "companies": entity_rights,
            "tasks": {"edit": full_rights, "delete": full_rights},
            "mail_access": True,
            "catalog_access": raw["is_admin"],
            "files_access": True,
            "status_rights": [],
            "is_admin": raw["is_admin"],
            "is_free": raw["is_free"],
            "is_active": raw["is_active"],
            # As amoCRM answers: the default group is listed with id 0, but its users have a null group_id.
            "group_id": None if raw["group_id"] == 0 else raw["group_id"],
            "role_id": None,
        },
        "_links": {"self": {"href": f"{host_url}api/v4/users/{raw['id']}"}},
    }
    if "phone_number" in with_:
        body["phone_number"] = raw["phone"]
    if "group" in with_:
        group = groups.get(raw["group_id"])
        body["_embedded"] = {
            "roles": [],
            "groups": [{"id": group["id"], "name": group["name"]}] if group else [],
        }
    return body


def _validate_new_user(item: Any, data: dict[str, Any], seen: set[str], group_ids: set[int]) -> list[dict[str, str]]:
    if not isinstance(item, dict):
        return [{"code": "InvalidType", "path": "", "detail": "Ожидается объект пользователя"}]
    errors = []
    name, email, password = item.get("name"), item.get("email"), item.get("password")
    if not isinstance(name, str) or not name.strip():
        errors.append({"code": "FieldMissing", "path": "name", "detail": "Не указано имя"})
    elif len(name.strip()) > MAX_NAME_LENGTH:
        errors.append({"code": "InvalidValue", "path": "name", "detail": f"Имя длиннее {MAX_NAME_LENGTH} символов"})
    elif not NAME_RE.match(name.strip()):
        errors.append({"code": "InvalidValue", "path": "name", "detail": "Имя содержит специальные символы"})
    if not isinstance(email, str) or not EMAIL_RE.match(email.strip()):
        errors.append({"code": "InvalidValue", "path": "email", "detail": "Неверный адрес электронной почты"})
    elif email.strip().casefold() in seen or email_taken(data, email.strip()):
        errors.append(
            {
                "code": "NotUnique",
                "path": "email",
                "detail": f"Адрес {email.strip()} уже занят другим пользователем",
            }
        )
    else:
        seen.add(email.strip().casefold())
    if not isinstance(password, str) or len(password) < 6:
        errors.append({"code": "InvalidValue", "path": "password", "detail": "Пароль короче 6 символов"})
    rights = item.get("rights", {})
    if not isinstance(rights, dict):
        errors.append({"code": "InvalidType", "path": "rights", "detail": "rights должен быть объектом"})
    else:
        # Omitted or null: the default group.
        group_id = rights.get("group_id") if rights.get("group_id") is not None else 0
        if isinstance(group_id, bool) or not isinstance(group_id, int) or group_id not in group_ids:
            errors.append({"code": "NotFound", "path": "rights.group_id", "detail": f"Отдел {group_id} не найден"})
        for flag in ("is_free", "is_admin"):
            if flag in rights and not isinstance(rights[flag], bool):
                errors.append({"code": "InvalidType", "path": f"rights.{flag}", "detail": "Ожидается true/false"})
    return errors


# ----- serving -----


class QuietHandler(WSGIRequestHandler):
    """Tests run thousands of requests; their access log is noise."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextlib.contextmanager
def running_emulator(emulator: Emulator | None = None, **kwargs: Any) -> Iterator[tuple[str, Emulator]]:
    """Serve an emulator on 127.0.0.1 on a free port in a background thread; yields (base_url, emulator)."""
    emu = emulator if emulator is not None else Emulator(**kwargs)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, create_app(emu), threaded=True, request_handler=QuietHandler)
    # A short poll interval: shutdown() waits up to one interval, and tests start hundreds of servers.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="crm-emulator", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", emu
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve(host: str, port: int, state_file: str | os.PathLike[str] | None, *, seed: int = 0, **kwargs: Any) -> None:
    """Run the emulator in the foreground until interrupted (the demo's CRM); seeds an empty account."""
    emu = Emulator(state_file=state_file, **kwargs)
    if seed and not emu.users():
        emu.seed(seed)
    server = make_server(host, port, create_app(emu), threaded=True)
    print(f"Эмулятор CRM: http://{host}:{server.server_port} (управление: /_admin)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
