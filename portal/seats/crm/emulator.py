"""Local amoCRM emulator: amoCRM's paths and JSON shapes over HTTP, fault knobs, a small admin page."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import html
import json
import os
import random
import re
import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .oauth import Tokens

DEFAULT_CLIENT_ID = "portal-demo"
DEFAULT_CLIENT_SECRET = "portal-demo-secret"
DEFAULT_GROUP_NAME = "Отдел продаж"
DEFAULT_SEED_GROUPS = ("Отдел продаж", "Бухгалтерия", "Техподдержка", "Логистика")
MAX_PAGE_LIMIT = 250
MAX_CREATE_BATCH = 10
# amoCRM: "the method becomes unavailable if the number of users exceeds 100". Its documented answers for the
# method are 200, 400, 401 and 403 ("not enough rights to call the method"); which one it gives above 100 users is
# not documented, so the emulator gives 403 with a detail that names the limit, and a blocked account stays 402.
MAX_API_USERS = 100
# Names of users added through the API: at most 50 characters, no special characters (letters, digits, spaces,
# "." and "-" are what people's names are made of; amoCRM does not list the forbidden ones).
MAX_NAME_LENGTH = 50
NAME_RE = re.compile(r"^[^\W_](?:[^\W_]|[ .\-])*$")
MAX_STATUS_BATCH = 50
CODE_TTL_SECONDS = 20 * 60
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class EmulatorError(ValueError):
    """An admin action was refused (Russian message, shown on the admin page)."""


@dataclass(frozen=True, slots=True)
class EmulatedUser:
    id: int
    name: str
    email: str
    phone: str | None
    is_active: bool
    is_free: bool
    is_admin: bool
    group_id: int


@dataclass(frozen=True, slots=True)
class EmulatedGroup:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Integration:
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str | None
    name: str = "Тарифный портал"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the emulator answered; tests read these to check batching and retries."""

    method: str
    path: str
    query: str
    status: int
    body: Any


@dataclass(frozen=True, slots=True)
class _Fault:
    kind: str  # "fail" | "fail_after" | "rate_limit" | "malformed" | "bad_shape" | "unauthorized"
    status: int = 503
    retry_after: int | None = None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _empty_state(account_id: int, account_name: str, subdomain: str) -> dict[str, Any]:
    return {
        "account": {"id": account_id, "name": account_name, "subdomain": subdomain},
        "groups": [{"id": 0, "name": DEFAULT_GROUP_NAME}],
        "users": [],
        "next_user_id": 1000001,
        "next_group_id": 1,
        # Token hashes only: the state file may be shared and read by people, tokens should not be.
        "access_tokens": {},
        "refresh_tokens": {},
        "codes": {},
    }


class Emulator:
    """The CRM: state, fault knobs and Python admin helpers; ``wsgi_app`` serves it over HTTP.

    With ``state_file`` the file is the source of truth for the account, groups, users and token hashes, so
    several processes can share one CRM; plan limit, token lifetime, integration and fault knobs belong to
    the process. The admin page has no login and no CSRF token: serve it on 127.0.0.1 only.
    """

    def __init__(
        self,
        *,
        subdomain: str = "demo",
        account_id: int = 30000001,
        account_name: str = "ООО «Ромашка»",
        plan_limit: int | None = None,
        token_ttl: int = 24 * 60 * 60,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        redirect_uri: str | None = None,
        state_file: str | os.PathLike[str] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.plan_limit = plan_limit
        self.token_ttl = token_ttl
        self.down = False
        self.blocked = False
        self.integrations: dict[str, Integration] = {}
        self.register_integration(client_id, client_secret, redirect_uri)
        self._now = now
        self._lock = threading.RLock()
        self._faults: deque[_Fault] = deque()
        self._requests: list[RequestRecord] = []
        self._path = Path(state_file) if state_file is not None else None
        self._stamp: tuple[int, int, int] | None = None
        self._data = _empty_state(account_id, account_name, subdomain)
        if self._path is not None:
            with self._state(write=not self._path.exists()):
                pass
        self._url_map = Map(
            [
                Rule("/", endpoint="index"),
                Rule("/oauth", endpoint="oauth_authorize", methods=["GET", "POST"]),
                Rule("/oauth2/access_token", endpoint="oauth_token", methods=["POST"]),
                Rule("/api/v4/account", endpoint="api_account", methods=["GET"]),
                Rule("/api/v4/users", endpoint="api_users", methods=["GET", "POST"]),
                Rule("/api/v4/users/deactivate", endpoint="api_deactivate", methods=["POST"]),
                Rule("/api/v4/users/activate", endpoint="api_activate", methods=["POST"]),
                Rule("/_admin", endpoint="admin", methods=["GET"]),
                Rule("/_admin/<action>", endpoint="admin_action", methods=["POST"]),
            ]
        )

    # ----- configuration and fault knobs -----

    def register_integration(
        self, client_id: str, client_secret: str, redirect_uri: str | None, name: str = "Тарифный портал"
    ) -> Integration:
        integration = Integration(client_id, client_secret, redirect_uri, name)
        self.integrations[client_id] = integration
        return integration

    def fail_next(self, n: int = 1, status: int = 503, *, after_processing: bool = False) -> None:
        """The next n API requests answer ``status``; ``after_processing`` does the work first, then fails."""
        self._add_faults(n, _Fault("fail_after" if after_processing else "fail", status=status))

    def rate_limit_next(self, n: int = 1, *, retry_after: int | None = None) -> None:
        """The next n API requests get 429 with an HTML body, as amoCRM's front servers send it."""
        self._add_faults(n, _Fault("rate_limit", status=429, retry_after=retry_after))

    def malformed_next(self, n: int = 1, *, shape: bool = False) -> None:
        """The next n API responses are broken JSON (or, with ``shape``, valid JSON without ``_embedded``)."""
        self._add_faults(n, _Fault("bad_shape" if shape else "malformed", status=200))

    def unauthorized_next(self, n: int = 1) -> None:
        """The next n API requests get 401 whatever the token."""
        self._add_faults(n, _Fault("unauthorized", status=401))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_faults(self, n: int, fault: _Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ----- tokens -----

    def issue_tokens(self, client_id: str = DEFAULT_CLIENT_ID) -> Tokens:
        """Tokens as if the owner had just connected the integration (tests and the demo skip the dance)."""
        with self._state(write=True) as data:
            payload = self._issue(data, client_id)
        expires = datetime.fromtimestamp(self._now(), UTC) + timedelta(seconds=payload["expires_in"])
        return Tokens(payload["access_token"], payload["refresh_token"], expires)

    def revoke_access_tokens(self) -> None:
        """Every access token stops working; refresh tokens still do (as after amoCRM rotates keys)."""
        with self._state(write=True) as data:
            data["access_tokens"].clear()

    def revoke_tokens(self) -> None:
        """The owner disconnected the integration: nothing works until it is connected again."""
        with self._state(write=True) as data:
            data["access_tokens"].clear()
            data["refresh_tokens"].clear()

    def _issue(self, data: dict[str, Any], client_id: str) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        data["access_tokens"][_hash(access)] = {
            "client_id": client_id,
            "expires_at": self._now() + self.token_ttl,
        }
        data["refresh_tokens"][_hash(refresh)] = {"client_id": client_id}
        return {
            "token_type": "Bearer",
            "expires_in": self.token_ttl,
            "access_token": access,
            "refresh_token": refresh,
        }

    # ----- admin helpers (Python API; the /_admin page uses the same) -----

    def account(self) -> dict[str, Any]:
        with self._state() as data:
            return dict(data["account"])

    def users(self) -> list[EmulatedUser]:
        with self._state() as data:
            return [_user_obj(u) for u in data["users"]]

    def user(self, user_id: int) -> EmulatedUser:
        with self._state() as data:
            return _user_obj(_find_user(data, user_id))

    def groups(self) -> list[EmulatedGroup]:
        with self._state() as data:
            return [EmulatedGroup(g["id"], g["name"]) for g in data["groups"]]

    def add_user(
        self,
        name: str,
        email: str,
        *,
        phone: str | None = None,
        group_id: int = 0,
        is_free: bool = False,
        is_admin: bool = False,
    ) -> EmulatedUser:
        with self._state(write=True) as data:
            name, email = name.strip(), email.strip()
            if not name:
                raise EmulatorError("Укажите имя пользователя")
            if not EMAIL_RE.match(email):
                raise EmulatorError(f"Неверный адрес электронной почты: {email}")
            if _email_taken(data, email):
                raise EmulatorError(f"Пользователь с адресом {email} уже есть")
            _find_group(data, group_id)
            raw = _new_user(data, name, email, phone or None, group_id, is_free, is_admin)
            return _user_obj(raw)

    def remove_user(self, user_id: int) -> EmulatedUser:
        """amoCRM never deletes users: removal is deactivation."""
        return self.set_active(user_id, False)

    def set_active(self, user_id: int, active: bool) -> EmulatedUser:
        with self._state(write=True) as data:
            raw = _find_user(data, user_id)
            if not active and raw["is_admin"]:
                raise EmulatorError(f"Нельзя отключить администратора аккаунта: {raw['name']}")
            raw["is_active"] = active
            return _user_obj(raw)

    def move_user(self, user_id: int, group_id: int) -> EmulatedUser:
        with self._state(write=True) as data:
            raw = _find_user(data, user_id)
            _find_group(data, group_id)
            raw["group_id"] = group_id
            return _user_obj(raw)

    def add_group(self, name: str) -> EmulatedGroup:
        with self._state(write=True) as data:
            name = name.strip()
            if not name:
                raise EmulatorError("Укажите название отдела")
            group = {"id": data["next_group_id"], "name": name}
            data["next_group_id"] += 1
            data["groups"].append(group)
            return EmulatedGroup(group["id"], group["name"])

    def rename_group(self, group_id: int, name: str) -> EmulatedGroup:
        with self._state(write=True) as data:
            name = name.strip()
            if not name:
                raise EmulatorError("Укажите название отдела")
            group = _find_group(data, group_id)
            group["name"] = name
            return EmulatedGroup(group["id"], group["name"])

    def seed(self, n_users: int, groups: Sequence[str] = DEFAULT_SEED_GROUPS, *, seed: int = 0) -> list[EmulatedUser]:
        """Fill the account with plausible people: the first is the admin, about a quarter are free users."""
        rng = random.Random(seed)
        with self._state(write=True) as data:
            group_ids = []
            for name in groups or (DEFAULT_GROUP_NAME,):
                existing = next((g for g in data["groups"] if g["name"] == name), None)
                if existing is None:
                    existing = {"id": data["next_group_id"], "name": name}
                    data["next_group_id"] += 1
                    data["groups"].append(existing)
                group_ids.append(existing["id"])
            has_admin = any(u["is_admin"] for u in data["users"])
            domain = f"{data['account']['subdomain']}.example"
            taken = {u["email"].casefold() for u in data["users"]}
            created = []
            for i in range(n_users):
                first, last = _person(rng)
                email = _unique_email(taken, f"{_translit(first)[0]}.{_translit(last)}", domain)
                phone = f"+79{rng.randrange(10**9):09d}" if rng.random() < 0.6 else None
                is_admin = not has_admin and i == 0
                is_free = not is_admin and rng.random() < 0.25
                group_id = group_ids[0] if is_admin else rng.choice(group_ids)
                created.append(_new_user(data, f"{first} {last}", email, phone, group_id, is_free, is_admin))
            return [_user_obj(u) for u in created]

    # ----- persistence -----

    @contextlib.contextmanager
    def _state(self, *, write: bool = False) -> Iterator[dict[str, Any]]:
        with self._lock:
            if self._path is None:
                yield self._data
                return
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # A file lock too, so the demo server and a CLI in another process never interleave writes.
            with open(f"{self._path}.lock", "a+") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
                try:
                    self._reload_if_changed()
                    try:
                        yield self._data
                    except BaseException:
                        self._stamp = None  # memory may be half-changed: reread the file next time
                        raise
                    if write:
                        self._save()
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _file_stamp(self) -> tuple[int, int, int] | None:
        assert self._path is not None
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _reload_if_changed(self) -> None:
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        assert self._path is not None
        self._data = json.loads(self._path.read_text(encoding="utf-8"))
        self._stamp = stamp

    def _save(self) -> None:
        assert self._path is not None
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=self._path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._data, f, ensure_ascii=False, indent=1)
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._stamp = self._file_stamp()

    # ----- WSGI -----

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        adapter = self._url_map.bind_to_environ(environ)
        try:
            endpoint, args = adapter.match()
            if endpoint.startswith("api_"):
                response = self._api(request, endpoint)
            else:
                response = getattr(self, f"_view_{endpoint}")(request, **args)
        except NotFound:
            response = _problem(404, "Not Found", "Нет такого адреса")
        except MethodNotAllowed:
            response = _problem(405, "Method Not Allowed", "Метод не поддерживается")
        except HTTPException as exc:
            response = exc.get_response(environ)  # type: ignore[assignment]
        return response(environ, start_response)

    __call__ = wsgi_app

    def _api(self, request: Request, endpoint: str) -> Response:
        body = request.get_json(silent=True) if request.method == "POST" else None
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        response = self._api_response(request, endpoint, fault)
        with self._lock:
            self._requests.append(
                RequestRecord(
                    request.method,
                    request.path,
                    request.query_string.decode(),
                    response.status_code,
                    body,
                )
            )
        return response

    def _api_response(self, request: Request, endpoint: str, fault: _Fault | None) -> Response:
        if self.down:
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
        if (fault is not None and fault.kind == "unauthorized") or not self._authorized(request):
            return _problem(401, "Unauthorized", "Токен доступа недействителен или истёк")
        if self.blocked:
            return _problem(402, "Payment Required", "Аккаунт заблокирован или не оплачен")
        response: Response = getattr(self, f"_{endpoint}")(request)
        if fault is None:
            return response
        if fault.kind == "fail_after":
            return _problem(fault.status, "Server Error", "Внутренняя ошибка CRM")
        if fault.kind == "malformed":
            return Response('{"_page": 1, "_embedded": {"users": [{"id": 1,', mimetype="application/hal+json")
        if fault.kind == "bad_shape":
            return _json_response({"_page": 1, "_links": {}})
        return response

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        with self._state() as data:
            record = data["access_tokens"].get(_hash(header.removeprefix("Bearer ").strip()))
        return record is not None and record["expires_at"] > self._now()

    # ----- API endpoints -----

    def _api_account(self, request: Request) -> Response:
        with self._state() as data:
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
            if "users_groups" in _with(request):
                body["_embedded"] = {
                    "users_groups": [{"id": g["id"], "name": g["name"], "uuid": None} for g in data["groups"]]
                }
        return _json_response(body)

    def _api_users(self, request: Request) -> Response:
        if request.method == "POST":
            return self._create_users(request)
        try:
            page = int(request.args.get("page", "1"))
            limit = int(request.args.get("limit", "50"))
        except ValueError:
            return _problem(400, "Bad Request", "Параметры page и limit должны быть числами")
        if page < 1 or not 1 <= limit <= MAX_PAGE_LIMIT:
            return _problem(400, "Bad Request", f"limit должен быть от 1 до {MAX_PAGE_LIMIT}, page от 1")
        with_ = _with(request)
        with self._state() as data:
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
            {
                "_total_items": total,
                "_page": page,
                "_page_count": pages,
                "_links": links,
                "_embedded": {"users": items},
            }
        )

    def _create_users(self, request: Request) -> Response:
        payload = request.get_json(silent=True)
        if not isinstance(payload, list) or not payload:
            return _problem(400, "Bad Request", "Ожидается непустой JSON-массив пользователей")
        if len(payload) > MAX_CREATE_BATCH:
            return _problem(
                400,
                "Bad Request",
                f"За один запрос можно добавить не больше {MAX_CREATE_BATCH} пользователей",
            )
        with self._state(write=True) as data:
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
            if self.plan_limit is not None and active + len(payload) > self.plan_limit:
                return _problem(
                    400,
                    "Bad Request",
                    f"Превышен лимит пользователей тарифа CRM: разрешено {self.plan_limit}, "
                    f"активных {active}, добавляется {len(payload)}",
                )
            created = []
            for item in payload:
                rights = item.get("rights") or {}
                created.append(
                    _new_user(
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

    def _api_deactivate(self, request: Request) -> Response:
        return self._set_status(request, active=False)

    def _api_activate(self, request: Request) -> Response:
        return self._set_status(request, active=True)

    def _set_status(self, request: Request, *, active: bool) -> Response:
        payload = request.get_json(silent=True)
        if not isinstance(payload, list) or not payload or len(payload) > MAX_STATUS_BATCH:
            return _problem(
                400, "Bad Request", f'Ожидается JSON-массив из 1–{MAX_STATUS_BATCH} объектов вида {{"id": …}}'
            )
        with self._state(write=True) as data:
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
                if self.plan_limit is not None and waking and active_now + waking > self.plan_limit:
                    return _problem(
                        400,
                        "Bad Request",
                        f"Превышен лимит пользователей тарифа CRM: разрешено {self.plan_limit}, "
                        f"активных {active_now}, включается {waking}",
                    )
            for user in targets:
                user["is_active"] = active
        return Response(status=202 if active else 204)

    # ----- OAuth -----

    def _view_oauth_authorize(self, request: Request) -> Response:
        source = request.form if request.method == "POST" else request.args
        client_id = source.get("client_id", "")
        state = source.get("state", "")
        mode = source.get("mode", "post_message")
        integration = self.integrations.get(client_id)
        if integration is None:
            return _html_page("Ошибка авторизации", "<p>Интеграция не найдена.</p>", status=400)
        account = self.account()
        if request.method == "GET":
            body = f"""
<p>Интеграция «{_e(integration.name)}» запрашивает доступ к аккаунту
{_e(account["name"])} ({_e(account["subdomain"])}): пользователи и отделы.</p>
<form method="post" action="/oauth">
  <input type="hidden" name="client_id" value="{_e(client_id)}">
  <input type="hidden" name="state" value="{_e(state)}">
  <input type="hidden" name="mode" value="{_e(mode)}">
  <button type="submit" name="decision" value="allow">Разрешить</button>
  <button type="submit" name="decision" value="deny">Отклонить</button>
</form>"""
            return _html_page("Предоставить доступ", body)
        params: dict[str, str]
        if request.form.get("decision") == "allow":
            code = secrets.token_urlsafe(24)
            with self._state(write=True) as data:
                data["codes"][_hash(code)] = {
                    "client_id": client_id,
                    "expires_at": self._now() + CODE_TTL_SECONDS,
                }
            # amoCRM sends the account's host as "referer"; here it is the emulator's own host.
            params = {"code": code, "state": state, "referer": request.host, "client_id": client_id}
        else:
            params = {"error": "access_denied", "state": state}
        if integration.redirect_uri is None:
            listing = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in params.items())
            return _html_page("Ответ авторизации", f"<dl>{listing}</dl>")
        separator = "&" if "?" in integration.redirect_uri else "?"
        return Response(status=302, headers={"Location": integration.redirect_uri + separator + urlencode(params)})

    def _view_oauth_token(self, request: Request) -> Response:
        payload = request.get_json(silent=True)
        form: dict[str, Any] = payload if isinstance(payload, dict) else request.form.to_dict()
        integration = self.integrations.get(str(form.get("client_id", "")))
        if integration is None or not secrets.compare_digest(
            str(form.get("client_secret", "")), integration.client_secret
        ):
            return _problem(401, "Unauthorized", "Неверный client_id или client_secret интеграции")
        if integration.redirect_uri is not None and form.get("redirect_uri") != integration.redirect_uri:
            return _problem(400, "Bad Request", "redirect_uri не совпадает с адресом интеграции")
        grant = form.get("grant_type")
        with self._state(write=True) as data:
            now = self._now()
            data["codes"] = {k: v for k, v in data["codes"].items() if v["expires_at"] > now}
            if grant == "authorization_code":
                record = data["codes"].pop(_hash(str(form.get("code", ""))), None)
                if record is None or record["client_id"] != integration.client_id:
                    return _problem(400, "Bad Request", "Код авторизации недействителен, истёк или уже использован")
            elif grant == "refresh_token":
                # Single-use, as in amoCRM: the old refresh token dies with this exchange.
                record = data["refresh_tokens"].pop(_hash(str(form.get("refresh_token", ""))), None)
                if record is None or record["client_id"] != integration.client_id:
                    return _problem(400, "Bad Request", "Токен обновления недействителен или отозван")
            else:
                return _problem(400, "Bad Request", "grant_type должен быть authorization_code или refresh_token")
            return _json_response(self._issue(data, integration.client_id), mimetype="application/json")

    # ----- admin page -----

    def _view_index(self, request: Request) -> Response:
        return Response(status=302, headers={"Location": "/_admin"})

    def _view_admin(self, request: Request, *, error: str | None = None) -> Response:
        account = self.account()
        groups = self.groups()
        users = self.users()
        message = request.args.get("msg") if error is None else None
        group_names = {g.id: g.name for g in groups}

        def group_select(selected: int | None) -> str:
            options = "".join(
                f'<option value="{g.id}"{" selected" if g.id == selected else ""}>{_e(g.name)}</option>' for g in groups
            )
            return f'<select name="group_id">{options}</select>'

        group_rows = "".join(
            f"""<tr><td>{g.id}</td><td>{_e(g.name)}</td><td>
<form method="post" action="/_admin/rename_group"><input type="hidden" name="group_id" value="{g.id}">
<label>Новое название <input name="name" value="{_e(g.name)}" required></label>
<button type="submit">Переименовать</button></form></td></tr>"""
            for g in groups
        )
        user_rows = "".join(
            f"""<tr><td>{u.id}</td><td>{_e(u.name)}</td><td>{_e(u.email)}</td><td>{_e(u.phone or "—")}</td>
<td><form method="post" action="/_admin/move_user"><input type="hidden" name="user_id" value="{u.id}">
{group_select(u.group_id)} <button type="submit">Перевести</button></form>
<small>{_e(group_names.get(u.group_id, "—"))}</small></td>
<td>{"Администратор" if u.is_admin else ("Бесплатный" if u.is_free else "Платный")}</td>
<td>{"Активен" if u.is_active else "Отключён"}</td>
<td><form method="post" action="/_admin/set_active"><input type="hidden" name="user_id" value="{u.id}">
<input type="hidden" name="active" value="{0 if u.is_active else 1}">
<button type="submit">{"Отключить" if u.is_active else "Включить"}</button></form></td></tr>"""
            for u in users
        )
        active = sum(1 for u in users if u.is_active)
        limit = "без ограничения" if self.plan_limit is None else str(self.plan_limit)
        notice = ""
        if error:
            notice = f'<p class="error" role="alert">{_e(error)}</p>'
        elif message:
            notice = f'<p class="notice" role="status">{_e(message)}</p>'
        body = f"""{notice}
<p>Аккаунт: {_e(account["name"])}, поддомен {_e(account["subdomain"])}.
Активных пользователей: {active} из {len(users)}; лимит тарифа: {limit}.</p>
<h2>Отделы</h2>
<table><thead><tr><th>ID</th><th>Название</th><th></th></tr></thead><tbody>{group_rows}</tbody></table>
<form method="post" action="/_admin/add_group">
<label>Название отдела <input name="name" required></label> <button type="submit">Добавить отдел</button>
</form>
<h2>Новый пользователь</h2>
<form method="post" action="/_admin/add_user">
<label>Имя <input name="name" required></label>
<label>Эл. почта <input name="email" type="email" required></label>
<label>Телефон <input name="phone"></label>
<label>Отдел {group_select(0)}</label>
<label><input type="checkbox" name="is_free" value="1"> Бесплатный</label>
<button type="submit">Добавить пользователя</button>
</form>
<h2>Пользователи</h2>
<table><thead><tr><th>ID</th><th>Имя</th><th>Эл. почта</th><th>Телефон</th><th>Отдел</th><th>Тип</th>
<th>Статус</th><th></th></tr></thead><tbody>{user_rows}</tbody></table>"""
        return _html_page("Эмулятор CRM", body, status=400 if error else 200)

    def _view_admin_action(self, request: Request, action: str) -> Response:
        form = request.form
        try:
            if action == "add_user":
                user = self.add_user(
                    form.get("name", ""),
                    form.get("email", ""),
                    phone=form.get("phone", "").strip() or None,
                    group_id=_form_int(form.get("group_id", "0")),
                    is_free=form.get("is_free") == "1",
                )
                message = f"Пользователь {user.name} добавлен"
            elif action == "set_active":
                active = form.get("active") == "1"
                user = self.set_active(_form_int(form.get("user_id", "")), active)
                message = f"Пользователь {user.name} {'включён' if active else 'отключён'}"
            elif action == "move_user":
                user = self.move_user(_form_int(form.get("user_id", "")), _form_int(form.get("group_id", "")))
                message = f"Пользователь {user.name} переведён в другой отдел"
            elif action == "add_group":
                group = self.add_group(form.get("name", ""))
                message = f"Отдел «{group.name}» добавлен"
            elif action == "rename_group":
                group = self.rename_group(_form_int(form.get("group_id", "")), form.get("name", ""))
                message = f"Отдел переименован в «{group.name}»"
            else:
                raise NotFound()
        except EmulatorError as exc:
            return self._view_admin(request, error=str(exc))
        return Response(status=303, headers={"Location": "/_admin?" + urlencode({"msg": message})})


# ----- helpers -----


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _form_int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise EmulatorError("Ожидалось число") from None


def _with(request: Request) -> set[str]:
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


def _html_page(title: str, body: str, status: int = 200) -> Response:
    page = f"""<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>body{{font-family:sans-serif;margin:2rem;max-width:70rem}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}}form{{display:inline}}
.error{{color:#a00}}.notice{{color:#060}}label{{margin-right:.5rem}}</style></head>
<body><h1>{_e(title)}</h1>
{body}
</body></html>"""
    return Response(page, status=status, mimetype="text/html")


def _find_user(data: dict[str, Any], user_id: int) -> dict[str, Any]:
    for user in data["users"]:
        if user["id"] == user_id:
            return user
    raise EmulatorError(f"Пользователь {user_id} не найден")


def _find_group(data: dict[str, Any], group_id: int) -> dict[str, Any]:
    for group in data["groups"]:
        if group["id"] == group_id:
            return group
    raise EmulatorError(f"Отдел {group_id} не найден")


def _email_taken(data: dict[str, Any], email: str) -> bool:
    folded = email.casefold()
    return any(u["email"].casefold() == folded for u in data["users"])


def _new_user(
    data: dict[str, Any],
    name: str,
    email: str,
    phone: str | None,
    group_id: int,
    is_free: bool,
    is_admin: bool,
) -> dict[str, Any]:
    user = {
        "id": data["next_user_id"],
        "name": name,
        "email": email,
        "phone": phone,
        "lang": "ru",
        "is_active": True,
        "is_free": is_free,
        "is_admin": is_admin,
        "group_id": group_id,
    }
    data["next_user_id"] += 1
    data["users"].append(user)
    return user


def _user_obj(raw: dict[str, Any]) -> EmulatedUser:
    return EmulatedUser(
        id=raw["id"],
        name=raw["name"],
        email=raw["email"],
        phone=raw["phone"],
        is_active=raw["is_active"],
        is_free=raw["is_free"],
        is_admin=raw["is_admin"],
        group_id=raw["group_id"],
    )


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
    elif email.strip().casefold() in seen or _email_taken(data, email.strip()):
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


# Plausible people for the seed; surnames get the feminine ending for women.
_MALE = (
    "Александр Дмитрий Максим Сергей Андрей Алексей Артём Илья Кирилл Михаил "
    "Никита Матвей Роман Егор Иван Павел Олег Виктор Николай Денис"
).split()
_FEMALE = (
    "Анна Мария Елена Ольга Наталья Татьяна Ирина Екатерина Светлана Юлия "
    "Анастасия Дарья Полина Ксения Виктория Алина Вера Софья Людмила Марина"
).split()
_SURNAMES = (
    "Иванов Смирнов Кузнецов Попов Васильев Петров Соколов Михайлов Новиков Фёдоров Морозов Волков "
    "Алексеев Лебедев Семёнов Егоров Павлов Козлов Степанов Николаев Орлов Андреев Макаров Никитин "
    "Захаров Зайцев Соловьёв Борисов Яковлев Григорьев Романов Воробьёв Сергеев Кузьмин Фролов"
).split()
_TRANSLIT = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya".replace("-", "").split(" "),
        strict=True,
    )
)


def _person(rng: random.Random) -> tuple[str, str]:
    surname = rng.choice(_SURNAMES)
    if rng.random() < 0.5:
        return rng.choice(_MALE), surname
    return rng.choice(_FEMALE), surname + "а"


def _translit(text: str) -> str:
    return "".join(_TRANSLIT.get(ch, ch) for ch in text.lower())


def _unique_email(taken: set[str], local: str, domain: str) -> str:
    candidate = f"{local}@{domain}"
    number = 2
    while candidate.casefold() in taken:
        candidate = f"{local}{number}@{domain}"
        number += 1
    taken.add(candidate.casefold())
    return candidate


# ----- serving -----


class _QuietHandler(WSGIRequestHandler):
    """Tests run thousands of requests; their access log is noise."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@contextlib.contextmanager
def running_emulator(emulator: Emulator | None = None, **kwargs: Any) -> Iterator[tuple[str, Emulator]]:
    """Serve an emulator on 127.0.0.1 on a free port in a background thread; yields (base_url, emulator)."""
    emu = emulator if emulator is not None else Emulator(**kwargs)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, emu, threaded=True, request_handler=_QuietHandler)
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
    server = make_server(host, port, emu, threaded=True)
    print(f"Эмулятор CRM: http://{host}:{server.server_port} (управление: /_admin)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Локальный эмулятор amoCRM для демо и тестов портала")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--state", default=None, help="JSON-файл состояния (общий с другими процессами)")
    parser.add_argument("--seed", type=int, default=0, help="сколько пользователей создать, если аккаунт пуст")
    parser.add_argument("--plan-limit", type=int, default=None, help="лимит активных пользователей тарифа CRM")
    parser.add_argument("--token-ttl", type=int, default=24 * 60 * 60, help="время жизни токена доступа, с")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--redirect-uri", default=None, help="куда вернуть владельца после «Разрешить»")
    args = parser.parse_args(argv)
    serve(
        args.host,
        args.port,
        args.state,
        seed=args.seed,
        plan_limit=args.plan_limit,
        token_ttl=args.token_ttl,
        client_id=args.client_id,
        client_secret=args.client_secret,
        redirect_uri=args.redirect_uri,
    )


if __name__ == "__main__":
    main()
