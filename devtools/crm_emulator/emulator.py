"""The local amoCRM's account: users, groups, token hashes, fault knobs and the helpers tests and the demo call.

Never shipped (pyproject packages only `portal*`). `devtools.crm_emulator.app` serves this state over HTTP with
amoCRM's paths and JSON shapes; its admin page uses the same helpers as the tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
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

from portal.seats.crm.factory import EMULATOR_CLIENT_ID as DEFAULT_CLIENT_ID
from portal.seats.crm.factory import EMULATOR_CLIENT_SECRET as DEFAULT_CLIENT_SECRET
from portal.seats.crm.oauth import Tokens

from .people import person, translit, unique_email

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
class Fault:
    kind: str  # "fail" | "fail_after" | "rate_limit" | "malformed" | "bad_shape" | "unauthorized"
    status: int = 503
    retry_after: int | None = None


def token_hash(token: str) -> str:
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
    """The CRM: state, fault knobs and Python admin helpers; ``app.create_app(emulator)`` serves it over HTTP.

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
        self._faults: deque[Fault] = deque()
        self._requests: list[RequestRecord] = []
        self._path = Path(state_file) if state_file is not None else None
        self._stamp: tuple[int, int, int] | None = None
        self._data = _empty_state(account_id, account_name, subdomain)
        if self._path is not None:
            with self.state(write=not self._path.exists()):
                pass

    # ----- configuration and fault knobs -----

    def register_integration(
        self, client_id: str, client_secret: str, redirect_uri: str | None, name: str = "Тарифный портал"
    ) -> Integration:
        integration = Integration(client_id, client_secret, redirect_uri, name)
        self.integrations[client_id] = integration
        return integration

    def fail_next(self, n: int = 1, status: int = 503, *, after_processing: bool = False) -> None:
        """The next n API requests answer ``status``; ``after_processing`` does the work first, then fails."""
        self._add_faults(n, Fault("fail_after" if after_processing else "fail", status=status))

    def rate_limit_next(self, n: int = 1, *, retry_after: int | None = None) -> None:
        """The next n API requests get 429 with an HTML body, as amoCRM's front servers send it."""
        self._add_faults(n, Fault("rate_limit", status=429, retry_after=retry_after))

    def malformed_next(self, n: int = 1, *, shape: bool = False) -> None:
        """The next n API responses are broken JSON (or, with ``shape``, valid JSON without ``_embedded``)."""
        self._add_faults(n, Fault("bad_shape" if shape else "malformed", status=200))

    def unauthorized_next(self, n: int = 1) -> None:
        """The next n API requests get 401 whatever the token."""
        self._add_faults(n, Fault("unauthorized", status=401))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_faults(self, n: int, fault: Fault) -> None:
        with self._lock:
            self._faults.extend([fault] * n)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def next_fault(self) -> Fault | None:
        """The fault a knob set for the next API request, if any (each is used once)."""
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self._requests.append(entry)

    def now(self) -> float:
        return self._now()

    # ----- tokens -----

    def issue_tokens(self, client_id: str = DEFAULT_CLIENT_ID) -> Tokens:
        """Tokens as if the owner had just connected the integration (tests and the demo skip the dance)."""
        with self.state(write=True) as data:
            payload = self.issue(data, client_id)
        expires = datetime.fromtimestamp(self._now(), UTC) + timedelta(seconds=payload["expires_in"])
        return Tokens(payload["access_token"], payload["refresh_token"], expires)

    def revoke_access_tokens(self) -> None:
        """Every access token stops working; refresh tokens still do (as after amoCRM rotates keys)."""
        with self.state(write=True) as data:
            data["access_tokens"].clear()

    def revoke_tokens(self) -> None:
        """The owner disconnected the integration: nothing works until it is connected again."""
        with self.state(write=True) as data:
            data["access_tokens"].clear()
            data["refresh_tokens"].clear()

    def issue(self, data: dict[str, Any], client_id: str) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        data["access_tokens"][token_hash(access)] = {
            "client_id": client_id,
            "expires_at": self._now() + self.token_ttl,
        }
        data["refresh_tokens"][token_hash(refresh)] = {"client_id": client_id}
        return {
            "token_type": "Bearer",
            "expires_in": self.token_ttl,
            "access_token": access,
            "refresh_token": refresh,
        }

    def authorized(self, authorization: str) -> bool:
        """Whether an Authorization header carries a live access token."""
        if not authorization.startswith("Bearer "):
            return False
        with self.state() as data:
            record = data["access_tokens"].get(token_hash(authorization.removeprefix("Bearer ").strip()))
        return record is not None and record["expires_at"] > self._now()

    # ----- admin helpers (Python API; the /_admin page uses the same) -----

    def account(self) -> dict[str, Any]:
        with self.state() as data:
            return dict(data["account"])

    def users(self) -> list[EmulatedUser]:
        with self.state() as data:
            return [user_obj(u) for u in data["users"]]

    def user(self, user_id: int) -> EmulatedUser:
        with self.state() as data:
            return user_obj(find_user(data, user_id))

    def groups(self) -> list[EmulatedGroup]:
        with self.state() as data:
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
        with self.state(write=True) as data:
            name, email = name.strip(), email.strip()
            if not name:
                raise EmulatorError("Укажите имя пользователя")
            if not EMAIL_RE.match(email):
                raise EmulatorError(f"Неверный адрес электронной почты: {email}")
            if email_taken(data, email):
                raise EmulatorError(f"Пользователь с адресом {email} уже есть")
            find_group(data, group_id)
            raw = new_user(data, name, email, phone or None, group_id, is_free, is_admin)
            return user_obj(raw)

    def remove_user(self, user_id: int) -> EmulatedUser:
        """amoCRM never deletes users: removal is deactivation."""
        return self.set_active(user_id, False)

    def set_active(self, user_id: int, active: bool) -> EmulatedUser:
        with self.state(write=True) as data:
            raw = find_user(data, user_id)
            if not active and raw["is_admin"]:
                raise EmulatorError(f"Нельзя отключить администратора аккаунта: {raw['name']}")
            raw["is_active"] = active
            return user_obj(raw)

    def move_user(self, user_id: int, group_id: int) -> EmulatedUser:
        with self.state(write=True) as data:
            raw = find_user(data, user_id)
            find_group(data, group_id)
            raw["group_id"] = group_id
            return user_obj(raw)

    def add_group(self, name: str) -> EmulatedGroup:
        with self.state(write=True) as data:
            name = name.strip()
            if not name:
                raise EmulatorError("Укажите название отдела")
            group = {"id": data["next_group_id"], "name": name}
            data["next_group_id"] += 1
            data["groups"].append(group)
            return EmulatedGroup(group["id"], group["name"])

    def rename_group(self, group_id: int, name: str) -> EmulatedGroup:
        with self.state(write=True) as data:
            name = name.strip()
            if not name:
                raise EmulatorError("Укажите название отдела")
            group = find_group(data, group_id)
            group["name"] = name
            return EmulatedGroup(group["id"], group["name"])

    def seed(self, n_users: int, groups: Sequence[str] = DEFAULT_SEED_GROUPS, *, seed: int = 0) -> list[EmulatedUser]:
        """Fill the account with plausible people: the first is the admin, about a quarter are free users."""
        rng = random.Random(seed)
        with self.state(write=True) as data:
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
                first, last = person(rng)
                email = unique_email(taken, f"{translit(first)[0]}.{translit(last)}", domain)
                phone = f"+79{rng.randrange(10**9):09d}" if rng.random() < 0.6 else None
                is_admin = not has_admin and i == 0
                is_free = not is_admin and rng.random() < 0.25
                group_id = group_ids[0] if is_admin else rng.choice(group_ids)
                created.append(new_user(data, f"{first} {last}", email, phone, group_id, is_free, is_admin))
            return [user_obj(u) for u in created]

    # ----- persistence -----

    @contextlib.contextmanager
    def state(self, *, write: bool = False) -> Iterator[dict[str, Any]]:
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


def find_user(data: dict[str, Any], user_id: int) -> dict[str, Any]:
    for user in data["users"]:
        if user["id"] == user_id:
            return user
    raise EmulatorError(f"Пользователь {user_id} не найден")


def find_group(data: dict[str, Any], group_id: int) -> dict[str, Any]:
    for group in data["groups"]:
        if group["id"] == group_id:
            return group
    raise EmulatorError(f"Отдел {group_id} не найден")


def email_taken(data: dict[str, Any], email: str) -> bool:
    folded = email.casefold()
    return any(u["email"].casefold() == folded for u in data["users"])


def new_user(
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


def user_obj(raw: dict[str, Any]) -> EmulatedUser:
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
