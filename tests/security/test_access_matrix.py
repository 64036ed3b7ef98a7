"""Role × page: every URL of the portal, asked by a visitor, a member, the accountant, the owner, support staff and
the owner of another company, with its own objects and with another account's objects."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient

from tests.conftest import RecordingSms, csrf_token
from tests.security.conftest import changed_tables, snapshot
from tests.security.matrix import EXPECTED, FORM_FIRST, Access, expected, methods, names_object, url, url_map
from tests.security.world import ROLES, World

# The company names a foreign 404 must not reveal.
OWN_NAME = "Ромашка"
OTHER_NAME = "Чужие"
ERROR_TITLES = {401: None, 403: "Нет доступа", 404: "Страница не найдена"}


@pytest.fixture(scope="module")
def clients(world: World, module_sms: RecordingSms) -> dict[str, FlaskClient]:
    return {role: world.client_as(role, module_sms) for role in ROLES}


@pytest.fixture(scope="module")
def tokens(clients: dict[str, FlaskClient]) -> dict[str, str]:
    pages = {"visitor": "/login", "staff": "/support"}
    return {role: csrf_token(client, pages.get(role, "/plans")) for role, client in clients.items()}


def _rules(world: World, *, method: str) -> list[Any]:
    return [r for r in world.app.url_map.iter_rules() if method in methods(r)]


def _check(access: Access, want: str, resp: Any, *, method: str, role: str, foreign: bool, where: str) -> None:
    status = resp.status_code
    location = urlsplit(resp.headers.get("Location", "")).path
    body = resp.get_data().decode("utf-8", "replace")
    resp.close()
    seen = f"{where}: {role} got {status} {location}, expected {want}"
    if want == "login":
        assert (status, location) == (302, "/login"), seen
    elif want == "support":
        assert (status, location) == (302, "/support"), seen
    elif want in ("401", "403", "404"):
        assert status == int(want), seen
        title = ERROR_TITLES[status]
        if title and not where.split()[-1].startswith("/api/"):
            assert title in body, seen
        # A refusal says nothing about the object behind it.
        assert (OTHER_NAME if foreign and role != "stranger" else "\0") not in body, seen
        assert (OWN_NAME if role == "stranger" and foreign else "\0") not in body, seen
    elif method == "GET":
        assert status in access.ok, seen
    else:
        assert status not in (401, 403, 404, 405) and status < 500, seen
        assert location not in ("/login", "/support"), seen


def test_the_matrix_covers_every_rule(world: World) -> None:
    in_app = {rule.endpoint for rule in world.app.url_map.iter_rules()}
    assert in_app - set(EXPECTED) == set(), "new URLs: decide in tests/security/matrix.py who may use them"
    assert set(EXPECTED) - in_app == set(), "URLs that no longer exist: drop them from the matrix"


def test_every_view_declares_who_may_enter(world: World) -> None:
    """The foundation's rule: each view carries exactly one access decorator (static files are Flask's)."""
    undeclared = [
        endpoint
        for endpoint, view in world.app.view_functions.items()
        if endpoint != "static" and not getattr(view, "_access", None)
    ]
    assert undeclared == []


GET_ENDPOINTS = sorted({r.endpoint for r in url_map().iter_rules() if "GET" in methods(r)})


@pytest.mark.parametrize("endpoint", GET_ENDPOINTS)
def test_get(endpoint: str, world: World, clients: dict[str, FlaskClient]) -> None:
    rules = [r for r in _rules(world, method="GET") if r.endpoint == endpoint]
    access = EXPECTED[endpoint]
    for rule in rules:
        variants = [False, True] if names_object(rule) else [False]
        for other_ids in variants:
            path = url(rule, world, foreign=other_ids)
            for role in ROLES:
                # The stranger's own objects are the other account's; ООО «Ромашка»'s are foreign to them.
                foreign = names_object(rule) and (other_ids != (role == "stranger"))
                if access.kind == "staff" or access.kind == "service":
                    foreign = False
                want = expected(access, role, foreign_object=foreign)
                resp = clients[role].get(path)
                _check(access, want, resp, method="GET", role=role, foreign=foreign, where=f"GET {path}")


# The webhooks are authenticated by the provider's signature or address: tests/security/test_csrf.py, tests/fuzz.
POST_ENDPOINTS = sorted({r.endpoint for r in url_map().iter_rules() if methods(r) - {"GET"}} - {"payments.webhook"})
# Data for views that read the form before the object (see FORM_FIRST).
FORM_DATA = {"crm.pending_import": {"phone": "+7 916 555-44-33"}}


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
def test_post_refusals_change_nothing(
    endpoint: str, world: World, clients: dict[str, FlaskClient], tokens: dict[str, str]
) -> None:
    """Everyone who may not act gets the refusal (with a valid CSRF token), and the database stays as it was."""
    rules = [r for r in world.app.url_map.iter_rules() if r.endpoint == endpoint and methods(r) - {"GET"}]
    access = EXPECTED[endpoint]
    before = snapshot(world.app)
    for rule in rules:
        verb = sorted(methods(rule) - {"GET"})[0]
        variants = [False, True] if names_object(rule) else [False]
        for other_ids in variants:
            path = url(rule, world, foreign=other_ids)
            for role in ROLES:
                foreign = names_object(rule) and (other_ids != (role == "stranger"))
                if access.kind in ("staff", "service"):
                    foreign = False
                want = expected(access, role, foreign_object=foreign)
                if want == "ok":
                    continue  # allowed requests change things: tests/security/test_access_allowed_posts.py
                data = {"csrf_token": tokens[role], **FORM_DATA.get(endpoint, {})}
                resp = clients[role].open(path, method=verb, data=data)
                if endpoint in FORM_FIRST and want == "404":
                    # The form is read first; the foreign id is then simply not found in the account.
                    assert resp.status_code in (302, 400, 404), f"{role} {path}: {resp.status_code}"
                    resp.close()
                    continue
                _check(access, want, resp, method=verb, role=role, foreign=foreign, where=f"{verb} {path}")
    assert changed_tables(before, snapshot(world.app)) == {}
