"""Arbitrary text in every form of the portal, posted with a valid CSRF token by someone allowed to use it:
never a server error, a clear message or a 4xx, and a refused form changes nothing."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import RecordingSms, csrf_token
from tests.fuzz.conftest import FUZZ, forms_on, hostile_text
from tests.security.conftest import changed_tables, snapshot
from tests.security.matrix import EXPECTED, expected, methods, url, url_map
from tests.security.world import World

# Actions that are carried out and fail for a reason outside the form: the attempt is recorded on purpose (the CRM
# is down here, and «Синхронизировать сейчас» leaves a failed run in the journal with the connection's last error).
JOURNALED = {
    "crm.sync_run": ("crm_sync_runs", "crm_sync_entries", "crm_connections"),
    # A retry that fails again says so (an error on the page), counts the attempt on the run itself and, for the
    # world's run (a CRM sync), journals the sync it tried as «Синхронизировать сейчас» does.
    "tasks.run_retry": ("task_runs", "crm_sync_runs", "crm_sync_entries", "crm_connections"),
}
# The machine endpoints have their own tests (test_webhooks.py, test_api.py).
MACHINE = {"service", "webhook"}
# Field names a form might have, for URLs whose form is not on any page the crawl reaches.
GENERIC = ["phone", "name", "code", "email", "reason", "comment", "plan", "months", "role", "confirm"]
ERROR_MARKERS = ('class="error"', "flash-error", "notice-danger", '"error"')


def _actor(endpoint: str) -> str:
    access = EXPECTED[endpoint]
    for role in ("owner", "staff", "accountant", "visitor"):
        if expected(access, role, foreign_object=False) == "ok":
            return role
    raise AssertionError(endpoint)


TARGETS = sorted(
    {
        (rule.endpoint, sorted(methods(rule) - {"GET"})[0])
        for rule in url_map().iter_rules()
        if methods(rule) - {"GET"} and EXPECTED[rule.endpoint].kind not in MACHINE
    }
)


@pytest.fixture(scope="module")
def form_fields(world: World, module_sms: RecordingSms) -> dict[str, dict[str, list[str]]]:
    """Crawl every page as each kind of person and note the fields of each form, by the endpoint it posts to."""
    adapter = world.app.url_map.bind("localhost")
    found: dict[str, dict[str, list[str]]] = {}
    extra = ["/checkout?plan=users-24&months=12", "/support-requests/new?kind=trial", "/login"]
    for role in ("owner", "accountant", "staff", "visitor"):
        client = world.client_as(role, module_sms)
        pages = [url(r, world) for r in world.app.url_map.iter_rules() if "GET" in methods(r)] + extra
        for page in pages:
            resp = client.get(page)
            if resp.status_code == 200 and resp.mimetype == "text/html":
                for form in forms_on(urlsplit(page).path, resp.get_data(as_text=True)):
                    try:
                        endpoint, _args = adapter.match(form["action"], method="POST")
                    except Exception:  # noqa: BLE001 - a form posting elsewhere (e.g. the sandbox's own page)
                        continue
                    fields = found.setdefault(endpoint, {})
                    for name, options in form["fields"].items():
                        fields.setdefault(name, []).extend(options)
            resp.close()
    return found


def test_the_crawl_found_the_forms(form_fields: dict[str, dict[str, list[str]]]) -> None:
    """A control for the harness itself: the forms a person fills in are found with their fields."""
    assert {"phone"} <= set(form_fields["accounts.login"])
    assert {"plan", "months", "payer_type"} <= set(form_fields["billing.checkout"])
    assert {"inn", "kpp", "name"} <= set(form_fields["documents.requisites_edit"])
    assert "phone" in form_fields["seats.user_add"]
    assert len(form_fields) >= 25, " ".join(sorted(form_fields))


def _refused(resp: Any, client: FlaskClient) -> tuple[bool, str]:
    """Was the input refused, and what did the person see?"""
    body = resp.get_data(as_text=True)
    if resp.status_code in (301, 302, 303):
        target = urlsplit(resp.headers["Location"])
        if not target.netloc or target.netloc == "localhost":
            follow = client.get(target.path + (f"?{target.query}" if target.query else ""))
            body = follow.get_data(as_text=True)
            follow.close()
        return "flash-error" in body, body
    if resp.status_code >= 400:
        return True, body
    return any(m in body for m in ERROR_MARKERS[:3]), body


@pytest.mark.parametrize(("endpoint", "verb"), TARGETS)
def test_arbitrary_text_in_every_form(
    endpoint: str,
    verb: str,
    world: World,
    module_sms: RecordingSms,
    form_fields: dict[str, dict[str, list[str]]],
) -> None:
    role = _actor(endpoint)
    client = world.client_as(role, module_sms)
    token = csrf_token(client, {"staff": "/support", "visitor": "/login"}.get(role, "/plans"))
    rule = next(r for r in world.app.url_map.iter_rules() if r.endpoint == endpoint)
    path = url(rule, world)
    known = form_fields.get(endpoint) or {name: [] for name in GENERIC}

    def value(options: list[str]) -> st.SearchStrategy[str]:
        return st.one_of(st.sampled_from(options), hostile_text()) if options else hostile_text()

    fields = st.fixed_dictionaries({}, optional={name: value(opts) for name, opts in known.items()})

    @FUZZ
    @given(data=fields)
    def post_it(data: dict[str, str]) -> None:
        before = snapshot(world.app)
        resp = client.open(path, method=verb, data={**data, "csrf_token": token})
        status = resp.status_code
        assert status < 500, f"{endpoint} {data!r}: {status}"
        refused, body = _refused(resp, client)
        resp.close()
        if status >= 400:
            assert any(m in body for m in ERROR_MARKERS) or "<h1" in body, f"{endpoint}: {status} without a message"
        if refused:
            changed = changed_tables(before, snapshot(world.app))
            for table in JOURNALED.get(endpoint, ()):
                changed.pop(table, None)
            assert changed == {}, f"{endpoint} refused {data!r} but changed"

    post_it()


HUGE_IDS = ["2147483648", "9223372036854775808", "1" + "0" * 30]


def _id_fields(fields: dict[str, list[str]]) -> list[str]:
    return [name for name in fields if name.endswith("_id") or name in ("request", "invoice", "account")]


def test_id_fields_beyond_the_database_range_are_refused_not_500(
    world: World, module_sms: RecordingSms, form_fields: dict[str, dict[str, list[str]]]
) -> None:
    """Random text rarely gets past a form's other checks; here every other field holds what a person would choose
    (the first option, a plain reason, the confirmation ticked) and only an id field is out of range."""
    failures, tried = [], []
    for endpoint, _verb in TARGETS:
        known = form_fields.get(endpoint) or {}
        ids = _id_fields(known)
        if not ids:
            continue
        role = _actor(endpoint)
        client = world.client_as(role, module_sms)
        token = csrf_token(client, {"staff": "/support", "visitor": "/login"}.get(role, "/plans"))
        rule = next(r for r in world.app.url_map.iter_rules() if r.endpoint == endpoint)
        plausible = {name: (options[0] if options else "Проверено по выписке") for name, options in known.items()}
        for name in ids:
            for huge in HUGE_IDS:
                tried.append(f"{endpoint}:{name}")
                before = snapshot(world.app)
                try:
                    resp = client.post(url(rule, world), data={**plausible, name: huge, "csrf_token": token})
                except Exception as exc:  # noqa: BLE001 - the test client re-raises what the app did not handle
                    failures.append(f"{endpoint} {name}={huge}: {type(exc).__name__}: {exc}"[:200])
                    continue
                if resp.status_code >= 500:
                    failures.append(f"{endpoint} {name}={huge}: {resp.status_code}")
                refused, _body = _refused(resp, client)
                resp.close()
                if refused and changed_tables(before, snapshot(world.app)):
                    failures.append(f"{endpoint} {name}={huge}: refused but changed")
    assert len(set(tried)) >= 3, tried  # the harness reached forms with id fields
    assert failures == []


# What a person types into a field of this name: realistic, often pasted with spaces, all optional fields filled.
REALISTIC = {
    "phone": "+7 (916) 123-45-67",
    "name": "Дмитрий Орлов",
    "company": "ООО «Северный ветер»",
    "email": "dima@example.ru",
    "code": "123 456",
    "inn": "7707 083 893",
    "kpp": "773601001",
    "ogrn": "1027700132195",
    "bik": "044525225",
    "account_number": "40702 810 9 3800 0012345",
    "correspondent_account": "30101810400000000225",
    "bank_name": "ПАО Сбербанк",
    "address": "117312, г. Москва, ул. Вавилова, д. 19",
    "edo_id": "2BE-7707083893-773601001-000000000000000000001",
    "reason": "Клиент попросил по телефону",
    "comment": "Нужен пробный месяц для отдела продаж",
    "amount": "1 990,00",
    "price": "45 000,00",
    "monthly_price": "45 000,00",
    "seats": "1500",
    "users": "1500",
    "storage_gb": "3072",
    "months": "12",
    "paid_at": "2026-11-20",
    "date": "2026-11-20",
    "q": "Ромашка",
    "query": "Ромашка",
    "confirm": "y",
}


def _realistic(name: str, options: list[str]) -> str:
    chosen = [o for o in options if o.strip()]
    if chosen:
        return chosen[0]
    return REALISTIC.get(name, "Проверено по выписке")


def test_every_form_filled_in_as_a_person_would_by_every_role_that_may(
    world: World, module_sms: RecordingSms, form_fields: dict[str, dict[str, list[str]]]
) -> None:
    """Every field filled, optional ones included, with what a person really types (an e-mail, a pasted phone, an ИНН
    with spaces): a form may accept or refuse it, never answer a server error (an optional e-mail once did)."""
    failures, tried = [], 0
    for endpoint, verb in TARGETS:
        known = form_fields.get(endpoint)
        if not known:
            continue
        data = {name: _realistic(name, options) for name, options in known.items()}
        rule = next(r for r in world.app.url_map.iter_rules() if r.endpoint == endpoint)
        for role in ("owner", "accountant", "staff", "visitor"):
            if expected(EXPECTED[endpoint], role, foreign_object=False) != "ok":
                continue
            client = world.client_as(role, module_sms)
            token = csrf_token(client, {"staff": "/support", "visitor": "/login"}.get(role, "/plans"))
            tried += 1
            try:
                resp = client.open(url(rule, world), method=verb, data={**data, "csrf_token": token})
            except Exception as exc:  # noqa: BLE001 - the test client re-raises what the app did not handle
                failures.append(f"{role} {endpoint}: {type(exc).__name__}: {exc}"[:300])
                continue
            if resp.status_code >= 500:
                failures.append(f"{role} {endpoint}: {resp.status_code}")
            resp.close()
    # A newcomer between the SMS code and their company: the registration form, every field filled.
    phone = "+79990000077"
    client = world.app.test_client()
    token = csrf_token(client, "/login")
    client.post("/login", data={"phone": phone, "csrf_token": token})
    client.post("/login/code", data={"code": module_sms.last_code(phone), "csrf_token": token})
    (form,) = forms_on("/register", client.get("/register").get_data(as_text=True))
    data = {name: _realistic(name, options) for name, options in form["fields"].items()}
    assert {"name", "company", "email"} <= set(data)
    try:
        resp = client.post("/register", data={**data, "csrf_token": csrf_token(client, "/register")})
        if resp.status_code != 302:
            failures.append(f"newcomer accounts.register: {resp.status_code} {data}")
    except Exception as exc:  # noqa: BLE001 - the test client re-raises what the app did not handle
        failures.append(f"newcomer accounts.register: {type(exc).__name__}: {exc}"[:300])
    assert tried >= 25, tried
    assert failures == []


def test_a_nul_byte_in_every_text_field_of_every_form_is_refused_at_the_field(
    world: World, module_sms: RecordingSms, form_fields: dict[str, dict[str, list[str]]]
) -> None:
    """Issue #14: a NUL byte in a search, a name or requisites was a 500 on PostgreSQL. Every field of every form,
    one at a time, holds a NUL among otherwise plausible values: never a server error, and nothing is stored."""
    failures, tried = [], 0
    for endpoint, verb in TARGETS:
        known = form_fields.get(endpoint)
        if not known:
            continue
        role = _actor(endpoint)
        client = world.client_as(role, module_sms)
        token = csrf_token(client, {"staff": "/support", "visitor": "/login"}.get(role, "/plans"))
        rule = next(r for r in world.app.url_map.iter_rules() if r.endpoint == endpoint)
        plausible = {name: _realistic(name, options) for name, options in known.items()}
        for name in known:
            if name == "csrf_token":
                continue
            tried += 1
            before = snapshot(world.app)
            data = {**plausible, name: plausible[name][:20] + "\x00x", "csrf_token": token}
            try:
                resp = client.open(url(rule, world), method=verb, data=data)
            except Exception as exc:  # noqa: BLE001 - the test client re-raises what the app did not handle
                failures.append(f"{endpoint} {name}: {type(exc).__name__}: {exc}"[:200])
                continue
            if resp.status_code >= 500:
                failures.append(f"{endpoint} {name}: {resp.status_code}")
            resp.close()
            changed = changed_tables(before, snapshot(world.app))
            if changed:
                failures.append(f"{endpoint} {name}: a NUL was accepted and changed {sorted(changed)}")
    assert tried >= 60, tried
    assert failures == []


@pytest.mark.parametrize(
    "path",
    [
        "/team?page=²",
        "/team?page=１２",
        "/team?q=%00",
        "/team?q=a%0Db",
        "/support/accounts?q=%00",
        "/documents?period=%00",
    ],
)
def test_non_ascii_digits_and_control_characters_in_the_address_are_a_clear_4xx(
    path: str, world: World, module_sms: RecordingSms
) -> None:
    role = "staff" if path.startswith("/support") else "owner"
    resp = world.client_as(role, module_sms).get(path)
    assert resp.status_code < 500, path
    if "page=" in path:
        assert resp.status_code == 200  # the first page, as for any page number that is not one
    else:
        assert resp.status_code == 400 and "недопустимые символы" in resp.get_data(as_text=True)
