"""The JSON API and the ids in URLs: arbitrary JSON, parameters and numbers get a 4xx with an error, never a 500,
and a refused request changes nothing."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import RecordingSms
from tests.fuzz.conftest import FUZZ, hostile_text
from tests.security.conftest import changed_tables, snapshot
from tests.security.matrix import methods, url, url_map
from tests.security.world import World

TOKEN = {"Authorization": "Bearer test-messenger-token"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text(), inner, max_size=3),
    max_leaves=8,
)
# Ids as a URL carries them: real ones, missing ones, and numbers no database column holds.
ids = st.one_of(
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=2**31 - 2, max_value=2**31 + 2),
    st.integers(min_value=2**63 - 2, max_value=2**63 + 2),
    st.integers(min_value=10**20, max_value=10**30),
)


def _body(keys: list[str]) -> st.SearchStrategy[Any]:
    shaped = st.fixed_dictionaries({}, optional={k: json_values for k in keys})
    return st.one_of(shaped, json_values)


def _assert_refusal_is_json(resp: Any, what: Any) -> None:
    assert resp.status_code < 500, f"{resp.status_code} for {what!r}"
    if resp.status_code >= 400:
        assert resp.is_json and resp.get_json()["error"], what


def test_messenger_api_with_arbitrary_json(world: World) -> None:
    client = world.app.test_client()
    own = world.own.account_id
    member = world.own.ids["user_id"]

    @FUZZ
    @given(
        target=st.sampled_from(["storage", "add", "deactivate", "reactivate", "list", "limits"]),
        account=st.one_of(st.just(own), ids),
        user=st.one_of(st.just(member), ids),
        body=_body(["used_bytes", "phone", "name", "email", "role"]),
        raw=st.one_of(st.none(), st.binary(max_size=50)),
        status=hostile_text(),
    )
    def call(target: str, account: int, user: int, body: Any, raw: bytes | None, status: str) -> None:
        before = snapshot(world.app)
        data = raw if raw is not None else json.dumps(body)
        base = f"/api/v1/accounts/{account}"
        if target == "storage":
            resp = client.put(f"{base}/storage", data=data, content_type="application/json", headers=TOKEN)
        elif target == "add":
            resp = client.post(f"{base}/users", data=data, content_type="application/json", headers=TOKEN)
        elif target in ("deactivate", "reactivate"):
            resp = client.post(f"{base}/users/{user}/{target}", headers=TOKEN)
        elif target == "list":
            resp = client.get(f"{base}/users", query_string={"status": status}, headers=TOKEN)
        else:
            resp = client.get(f"{base}/limits", headers=TOKEN)
        _assert_refusal_is_json(resp, (target, account, user, body, raw))
        if resp.status_code >= 400:
            assert changed_tables(before, snapshot(world.app)) == {}, (target, body)

    call()


def test_pricing_api_with_arbitrary_parameters(world: World) -> None:
    client = world.app.test_client()

    @FUZZ
    @given(
        plan=st.one_of(hostile_text(), st.sampled_from(["users-12", "users-1000", "users-5"])), months=hostile_text()
    )
    def quote(plan: str, months: str) -> None:
        resp = client.get("/api/v1/quote", query_string={"plan": plan, "months": months})
        _assert_refusal_is_json(resp, (plan, months))
        if resp.status_code == 200:
            body = resp.get_json()
            assert body["total"] == body["subtotal"] - body["discount"] and isinstance(body["total"], int)
        else:
            assert resp.status_code in (400, 404)

    quote()


INT_ROUTES = sorted(
    {rule.endpoint for rule in url_map().iter_rules() if "GET" in methods(rule) and re.search(r"<int:", rule.rule)}
)


@pytest.mark.parametrize("endpoint", INT_ROUTES)
def test_any_number_in_a_url_is_a_page_or_a_404(endpoint: str, world: World, module_sms: RecordingSms) -> None:
    """Ids beyond what a database column holds (2³¹, 2⁶³, 10²⁰) are simply not found."""
    role = "staff" if endpoint.startswith("support.") else "owner"
    client = world.client_as(role, module_sms)
    headers = TOKEN if endpoint.startswith("api.") else {}
    rule = next(r for r in world.app.url_map.iter_rules() if r.endpoint == endpoint)
    template = url(rule, world)

    @FUZZ
    @given(number=ids)
    def visit(number: int) -> None:
        path = re.sub(r"/\d+(?=/|$|\?)", f"/{number}", template)
        resp = client.get(path, headers=headers)
        assert resp.status_code in (200, 302, 400, 404), f"{path}: {resp.status_code}"
        resp.close()

    visit()


@pytest.mark.parametrize("key", ["phone", "name", "email", "role"])
def test_a_nul_byte_in_any_string_of_the_api_is_a_400_with_a_json_error(world: World, key: str) -> None:
    """Issue #14: a NUL byte in the API was a 500 on PostgreSQL. Anywhere in the body, keys included: a 400."""
    client = world.app.test_client()
    own = world.own.account_id
    body = {"phone": "+79165550999", "name": "Вера Попова", "email": "vera@example.ru", "role": "member"}
    for bad in ({**body, key: body[key] + "\x00"}, {**body, f"{key}\x00": "x"}, {**body, "extra": ["ok", "a\x01b"]}):
        before = snapshot(world.app)
        resp = client.post(f"/api/v1/accounts/{own}/users", json=bad, headers=TOKEN)
        assert resp.status_code == 400 and resp.is_json and "непечатаемые" in resp.get_json()["error"], bad
        assert changed_tables(before, snapshot(world.app)) == {}
    resp = client.put(f"/api/v1/accounts/{own}/storage", json={"used_bytes": 1, "note": "\x00"}, headers=TOKEN)
    assert resp.status_code == 400 and resp.is_json
