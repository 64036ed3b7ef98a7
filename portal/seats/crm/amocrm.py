"""amoCRM REST API v4 client for the seat sync: users, groups, OAuth tokens, pacing and retries."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from urllib3.exceptions import NewConnectionError

from . import oauth
from .amocrm_json import embedded, json_int, json_object, problem_details, user_from_json, validation_reasons
from .base import (
    BATCH_SIZE,
    DEFAULT_GROUP_ID,
    CrmAccountInfo,
    CrmAuthError,
    CrmBadResponse,
    CrmBlocked,
    CrmGroup,
    CrmOperationForbidden,
    CrmRefused,
    CrmUnavailable,
    CrmUser,
    NewCrmUser,
    batched,
)
from .oauth import OAuthCredentials, Tokens, TokenStore

log = logging.getLogger(__name__)

T = TypeVar("T")

PAGE_LIMIT = 250
# Refresh a little before expiry so a token never dies between our check and the CRM's.
REFRESH_MARGIN_SECONDS = 60
MAX_PAGES = 10_000
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0
RETRY_AFTER_CAP_SECONDS = 120.0

_OPERATIONS = {
    "create": "создание пользователей",
    "deactivate": "отключение пользователей",
    "activate": "включение пользователей",
}
# What a 403 on a write means when the account still answers, and what the owner can do about it.
_FORBIDDEN = {
    "create": (
        "amoCRM не даёт добавлять пользователей через API: по её правилам это недоступно, когда в аккаунте больше "
        "100 пользователей, и требует прав администратора. Остальные изменения отправляются как обычно"
    ),
    "deactivate": "amoCRM не даёт отключать пользователей через API: отключите пользователя в amoCRM вручную",
    "activate": "amoCRM не даёт включать пользователей через API: включите пользователя в amoCRM вручную",
}

# amoCRM's rules for the name of a user added through the API: at most 50 characters, no special characters.
# Which characters are "special" is not listed; we keep letters of any script, digits, spaces, "." and "-" — the
# characters of people's names — and replace everything else with a space.
NAME_MAX_LENGTH = 50
_NAME_FORBIDDEN = re.compile(r"[^\w .\-]|_")
_NAME_FALLBACK = "Пользователь"


def amocrm_user_name(name: str, email: str | None = None) -> str:
    """The name as amoCRM accepts it: special characters dropped, cut to 50 characters at a word boundary."""
    cleaned = " ".join(_NAME_FORBIDDEN.sub(" ", name or "").split()).strip(" .-")
    if not cleaned and email:
        cleaned = " ".join(_NAME_FORBIDDEN.sub(" ", email.split("@")[0]).split()).strip(" .-")
    if len(cleaned) > NAME_MAX_LENGTH:
        cut = cleaned[: NAME_MAX_LENGTH + 1]
        # Keep whole words when the first one fits; a single 60-letter word is cut where it must be.
        cleaned = cut.rsplit(" ", 1)[0] if " " in cut else cut
        cleaned = cleaned[:NAME_MAX_LENGTH].strip(" .-")
    return cleaned or _NAME_FALLBACK


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Pacer:
    """At most ``limit`` requests in any one-second window (amoCRM allows 7 a second per integration): a moving
    window of the last ``limit`` requests' times, told by the injected `clock` and waited out with the injected
    `sleep`. Both are the pacer's own, so a test or the bench can run it on a virtual clock that only its sleep
    moves (the `limits` package's storage stamped its window with the real clock, so a virtual sleep spun on it)."""

    def __init__(
        self,
        limit: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        key: str = "amocrm",
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._hits: deque[float] = deque()
        self._clock = clock
        self._sleep = sleep
        self._key = key
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            while True:
                now = self._clock()
                while self._hits and self._hits[0] + 1.0 <= now:
                    self._hits.popleft()
                if len(self._hits) < self._limit:
                    self._hits.append(now)
                    return
                # The window frees a place when its oldest request is a second old; a hair later, so the next
                # look finds it free.
                self._sleep(self._hits[0] + 1.0 - now + 1e-6)


class _Transient(Exception):
    """One attempt failed in a way worth retrying; ``ambiguous`` if the CRM may have done the work."""

    def __init__(self, message: str, ambiguous: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ambiguous = ambiguous
        self.retry_after = retry_after


class AmoCrmClient:
    """The CrmClient over amoCRM's HTTP API; safe to share between threads of one process."""

    def __init__(
        self,
        base_url: str,
        token_store: TokenStore,
        *,
        credentials: OAuthCredentials | None = None,
        requests_per_second: int = 7,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_retries: int = 5,
        now: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
        timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        self._base_url = f"{parts.scheme}://{parts.netloc}"
        self._token_store = token_store
        self._credentials = credentials
        self._session = session or requests.Session()
        self._sleep = sleep
        self._limiter = Pacer(requests_per_second, clock=clock, sleep=sleep, key=self._base_url)
        self._max_retries = max_retries
        self._now = now
        self._rng = rng or random.Random()
        self._timeout = timeout
        self._refresh_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self._base_url

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> AmoCrmClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----- public API -----

    def account_info(self) -> CrmAccountInfo:
        data = self._get_json("/api/v4/account")
        try:
            return CrmAccountInfo(id=json_int(data["id"]), name=str(data["name"]), subdomain=str(data["subdomain"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CrmBadResponse("CRM вернула сведения об аккаунте неожиданного вида") from exc

    def list_groups(self) -> list[CrmGroup]:
        data = self._get_json("/api/v4/account?with=users_groups")
        try:
            raw_groups = embedded(data)["users_groups"]
            return [CrmGroup(id=json_int(g["id"]), name=str(g["name"])) for g in raw_groups]
        except (KeyError, TypeError, ValueError) as exc:
            raise CrmBadResponse("CRM вернула список отделов неожиданного вида") from exc

    def iter_users(self) -> Iterator[CrmUser]:
        """Users page by page, following the CRM's own ``next`` links."""
        url: str | None = self._url(f"/api/v4/users?page=1&limit={PAGE_LIMIT}&with=group,phone_number")
        seen: set[str] = set()
        while url is not None:
            if url in seen or len(seen) >= MAX_PAGES:
                raise CrmBadResponse("CRM вернула зацикленные ссылки на страницы списка пользователей")
            seen.add(url)
            response = self._with_retries(lambda _previous, u=url: self._send("GET", u))
            if response.status_code == 204:
                return
            data = json_object(response)
            try:
                raw_users = embedded(data)["users"]
                users = [user_from_json(raw) for raw in raw_users]
            except (KeyError, TypeError, ValueError) as exc:
                raise CrmBadResponse("CRM вернула список пользователей неожиданного вида") from exc
            yield from users
            url = self._next_link(data)

    def list_users(self) -> list[CrmUser]:
        return list(self.iter_users())

    def create_users(self, users: Sequence[NewCrmUser]) -> list[CrmUser]:
        emails = [u.email.casefold() for u in users]
        if len(set(emails)) != len(emails):
            raise ValueError("emails of new users must be unique")
        created: dict[str, CrmUser] = {}
        for batch in batched(list(users), BATCH_SIZE):
            created.update(self._create_batch(batch))
        return [created[e] for e in emails]

    def deactivate_users(self, ids: Iterable[int]) -> None:
        self._batch_post("/api/v4/users/deactivate", "deactivate", ids)

    def activate_users(self, ids: Iterable[int]) -> None:
        self._batch_post("/api/v4/users/activate", "activate", ids)

    # ----- operations -----

    def _create_batch(self, batch: Sequence[NewCrmUser]) -> dict[str, CrmUser]:
        created: dict[str, CrmUser] = {}
        pending = list(batch)

        def attempt(previous: _Transient | None) -> None:
            nonlocal pending
            if previous is not None and previous.ambiguous:
                # The CRM may have created the users before failing; resending would duplicate them
                # or be refused as "email taken", so take the ones that exist and send only the rest.
                existing = {u.email.casefold(): u for u in self.iter_users() if u.email}
                for new in pending:
                    if new.email.casefold() in existing:
                        created[new.email.casefold()] = existing[new.email.casefold()]
                pending = [u for u in pending if u.email.casefold() not in created]
            if not pending:
                return
            response = self._send(
                "POST", self._url("/api/v4/users"), json=[_new_user_json(u) for u in pending], operation="create"
            )
            self._raise_for_refusal(response, "create")
            data = json_object(response)
            try:
                returned = [user_from_json(raw) for raw in embedded(data)["users"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise CrmBadResponse("CRM вернула созданных пользователей в неожиданном виде") from exc
            by_email = {u.email.casefold(): u for u in returned if u.email}
            missing = [u.email for u in pending if u.email.casefold() not in by_email]
            if missing:
                raise CrmBadResponse(
                    f"CRM не вернула созданных пользователей: {', '.join(missing)}",
                )
            for new in pending:
                created[new.email.casefold()] = by_email[new.email.casefold()]
            pending = []

        self._with_retries(attempt)
        log.info("CRM created %d users", len(created))
        return created

    def _batch_post(self, path: str, operation: str, ids: Iterable[int]) -> None:
        unique = list(dict.fromkeys(ids))
        for batch in batched(unique, BATCH_SIZE):
            body = [{"id": user_id} for user_id in batch]
            # Activation and deactivation are idempotent, so a blind resend is safe.
            response = self._with_retries(
                lambda _previous, b=body: self._send("POST", self._url(path), json=b, operation=operation),
            )
            self._raise_for_refusal(response, operation)
            if not 200 <= response.status_code < 300:
                raise CrmBadResponse(f"CRM ответила неожиданным статусом HTTP {response.status_code}")
        if unique:
            log.info("CRM %s: %d users", operation, len(unique))

    def _get_json(self, path: str) -> dict[str, Any]:
        response = self._with_retries(lambda _previous: self._send("GET", self._url(path)))
        if response.status_code != 200:
            raise CrmBadResponse(f"CRM ответила неожиданным статусом HTTP {response.status_code}")
        return json_object(response)

    # ----- transport -----

    def _url(self, path: str) -> str:
        return urljoin(self._base_url + "/", path.lstrip("/"))

    def _next_link(self, data: dict[str, Any]) -> str | None:
        links = data.get("_links")
        nxt = links.get("next") if isinstance(links, dict) else None
        if nxt is None:
            return None
        href = nxt.get("href") if isinstance(nxt, dict) else None
        if not isinstance(href, str) or not href:
            raise CrmBadResponse("CRM вернула ссылку на следующую страницу неожиданного вида")
        url = urljoin(self._base_url + "/", href)
        # The bearer token goes with every request, so never follow a link off the account's host.
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self._base_url:
            raise CrmBadResponse("CRM вернула ссылку на следующую страницу на чужой адрес")
        return url

    def _with_retries(self, attempt: Callable[[_Transient | None], T]) -> T:
        """Run `attempt` until it succeeds, retrying transient failures with backoff (tenacity); the attempt hears
        how the previous one failed (a create that may have reached the CRM checks before sending again)."""
        previous: list[_Transient] = []

        def once() -> T:
            try:
                return attempt(previous[-1] if previous else None)
            except _Transient as failure:
                previous.append(failure)
                raise

        def wait(state: RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            return self._backoff(state.attempt_number - 1, getattr(failure, "retry_after", None))

        def before_sleep(state: RetryCallState) -> None:
            failure = previous[-1]
            delay = state.upcoming_sleep
            log.warning("CRM attempt %d failed (%s), retrying in %.2f s", state.attempt_number, failure.message, delay)

        retrying = Retrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(once)
        except _Transient as failure:
            raise CrmUnavailable(
                f"CRM временно недоступна: {failure.message}; попыток: {self._max_retries + 1}. "
                "Синхронизация повторится позже"
            ) from None

    def _backoff(self, number: int, retry_after: float | None) -> float:
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**number)
        # "Equal jitter": never shorter than half the step, so retries of many workers spread out
        # without collapsing to zero.
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP_SECONDS))
        return delay

    def _send(self, method: str, url: str, *, json: Any = None, operation: str | None = None) -> requests.Response:
        """One attempt: pace, authorize (refreshing once on 401), classify transient failures.

        ``operation`` names the kind of change a write makes, so that a 403 the CRM gives to that kind alone is
        reported as its refusal rather than as a blocked account.
        """
        tokens = self._fresh_tokens()
        response = self._http(method, url, tokens, json)
        if response.status_code == 401:
            log.info("CRM rejected the access token, refreshing once")
            tokens = self._refresh(tokens)
            response = self._http(method, url, tokens, json)
            if response.status_code == 401:
                raise CrmAuthError(
                    "CRM не принимает токен доступа даже после обновления: переподключите интеграцию с CRM"
                )
        status = response.status_code
        if status == 403 and operation is not None and self._account_answers(tokens):
            detail = problem_details(response).get("detail")
            raise CrmOperationForbidden(
                _FORBIDDEN[operation] + (f" (ответ CRM: {detail})" if detail else ""),
                operation=operation,
                detail=detail,
            )
        if status in (402, 403):
            raise CrmBlocked(detail=problem_details(response).get("detail"))
        if status == 429:
            raise _Transient("превышен лимит запросов (HTTP 429)", False, _retry_after(response, self._now()))
        if status >= 500:
            # 503 is a refusal to start work; 500/502/504 may come after the CRM already did it.
            raise _Transient(f"ошибка сервера CRM (HTTP {status})", status != 503, _retry_after(response, self._now()))
        if 300 <= status < 400 or status in (404, 405):
            raise CrmBadResponse(f"CRM ответила неожиданным статусом HTTP {status}")
        return response

    def _account_answers(self, tokens: Tokens) -> bool:
        """Whether the account itself still works: a blocked or unpaid amoCRM account refuses every request."""
        try:
            probe = self._http("GET", self._url("/api/v4/account"), tokens, None)
        except _Transient:
            return False
        return probe.status_code == 200

    def _http(self, method: str, url: str, tokens: Tokens, json: Any) -> requests.Response:
        self._limiter.acquire()
        path = urlsplit(url)
        shown = path.path + (f"?{path.query}" if path.query else "")
        try:
            response = self._session.request(
                method,
                url,
                json=json,
                headers={"Authorization": f"Bearer {tokens.access_token}", "Accept": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            log.warning("CRM %s %s failed: %s", method, shown, type(exc).__name__)
            raise _Transient("нет связи с CRM: она не ответила, попробуем ещё раз", not _never_sent(exc)) from exc
        log.debug("CRM %s %s -> %s", method, shown, response.status_code)
        return response

    # ----- tokens -----

    def _fresh_tokens(self) -> Tokens:
        tokens = self._token_store.get()
        if tokens is None:
            raise CrmAuthError("CRM не подключена: нет токена доступа. Подключите интеграцию с CRM")
        if tokens.expires_within(REFRESH_MARGIN_SECONDS, self._now()):
            log.info("CRM access token expires soon, refreshing")
            tokens = self._refresh(tokens)
        return tokens

    def _refresh(self, stale: Tokens) -> Tokens:
        with self._refresh_lock:
            current = self._token_store.get()
            # Another thread may have refreshed while we waited; amoCRM refresh tokens are single-use,
            # so refreshing again with the old one would fail.
            if current is not None and current.access_token != stale.access_token:
                return current
            if self._credentials is None:
                raise CrmAuthError("Доступ к CRM истёк, а данных интеграции для его обновления нет")
            self._limiter.acquire()
            creds = self._credentials
            try:
                tokens = oauth.refresh(
                    oauth.token_url_for(self._base_url),
                    creds.client_id,
                    creds.client_secret,
                    stale.refresh_token,
                    creds.redirect_uri,
                    session=self._session,
                    now=self._now(),
                    timeout=self._timeout,
                )
            except CrmUnavailable as exc:
                raise _Transient(exc.message, False) from exc
            self._token_store.save(tokens)
            log.info("CRM tokens refreshed")
            return tokens

    # ----- errors -----

    def _raise_for_refusal(self, response: requests.Response, operation: str) -> None:
        if not 400 <= response.status_code < 500:
            return
        problem = problem_details(response)
        reasons = validation_reasons(problem.get("validation-errors"))
        detail = problem.get("detail") or problem.get("title") or f"HTTP {response.status_code}"
        text = f"CRM отказала в операции «{_OPERATIONS[operation]}»: {detail}"
        if reasons:
            text += " (" + "; ".join(reasons) + ")"
        raise CrmRefused(text, detail=detail, validation_errors=problem.get("validation-errors") or [])


def _never_sent(exc: requests.RequestException) -> bool:
    """True if the connection was never made, so the CRM cannot have acted on the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        # requests wraps "connection refused" as MaxRetryError(reason=NewConnectionError).
        reason = exc.args[0] if exc.args else None
        return isinstance(getattr(reason, "reason", None), NewConnectionError)
    return False


def _retry_after(response: requests.Response, now: datetime) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _new_user_json(user: NewCrmUser) -> dict[str, Any]:
    rights: dict[str, Any] = {"is_free": True}
    # Without a group amoCRM puts the user in its default group; 0 is only how its group list names that group.
    if user.group_id is not None and user.group_id != DEFAULT_GROUP_ID:
        rights["group_id"] = user.group_id
    return {
        "name": amocrm_user_name(user.name, user.email),
        "email": user.email,
        "password": user.password,
        "lang": "ru",
        "rights": rights,
    }
