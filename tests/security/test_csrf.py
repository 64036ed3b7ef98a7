"""CSRF: every state change through a browser form needs the session's token; only the machine endpoints skip it."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import RecordingSms, csrf_token
from tests.security.conftest import changed_tables, snapshot
from tests.security.matrix import EXPECTED, methods, url, url_map
from tests.security.world import World

# Exempt by design, each authenticated otherwise: the providers' notifications (signature / address + re-reading the
# payment) and the messenger's JSON API (bearer token). Nothing else may be on this list.
CSRF_EXEMPT = {
    "payments.webhook",
    "api.account_storage_update",
    "api.account_user_add",
    "api.account_user_deactivate",
    "api.account_user_reactivate",
}
STALE_FORM = "Форма устарела"


def _who_may(endpoint: str) -> str:
    access = EXPECTED[endpoint]
    if access.kind == "staff":
        return "staff"
    if access.kind in ("public", "webhook", "service", "home"):
        return "visitor"
    return "owner"


STATE_CHANGES = sorted(
    (rule.endpoint, sorted(methods(rule) - {"GET"})[0]) for rule in url_map().iter_rules() if methods(rule) - {"GET"}
)
FORMS = [(endpoint, verb) for endpoint, verb in STATE_CHANGES if endpoint not in CSRF_EXEMPT]


@pytest.fixture(scope="module")
def people(world: World, module_sms: RecordingSms) -> dict[str, FlaskClient]:
    return {role: world.client_as(role, module_sms) for role in ("visitor", "owner", "staff")}


@pytest.mark.parametrize(("endpoint", "verb"), FORMS)
def test_a_post_without_the_token_is_refused_and_changes_nothing(
    endpoint: str, verb: str, world: World, people: dict[str, FlaskClient]
) -> None:
    client = people[_who_may(endpoint)]
    rule = next(r for r in world.app.url_map.iter_rules() if r.endpoint == endpoint)
    before = snapshot(world.app)
    resp = client.open(url(rule, world), method=verb, data={"phone": "+79990000001", "code": "123456"})
    assert resp.status_code == 400, (endpoint, resp.status_code)
    assert STALE_FORM in resp.get_data(as_text=True)
    # A token of another session is no better than none.
    resp = client.open(
        url(rule, world), method=verb, data={"csrf_token": csrf_token(world.app.test_client(), "/login")}
    )
    assert resp.status_code == 400 and STALE_FORM in resp.get_data(as_text=True)
    assert changed_tables(before, snapshot(world.app)) == {}


def test_the_exempt_set_is_exactly_the_machine_endpoints(world: World) -> None:
    """Found by asking, not by reading the code: which state-changing URLs answer without a token?"""
    client = world.app.test_client()
    answered: dict[str, int] = {}
    before = snapshot(world.app)
    for endpoint, verb in STATE_CHANGES:
        rule = next(r for r in world.app.url_map.iter_rules() if r.endpoint == endpoint)
        resp = client.open(url(rule, world), method=verb, data={})
        if STALE_FORM not in resp.get_data(as_text=True):
            answered[endpoint] = resp.status_code
    assert set(answered) == CSRF_EXEMPT
    # Each of them refuses an anonymous, unsigned request itself (no token, no signature), and nothing changes.
    assert {e: s for e, s in answered.items() if s not in (400, 401, 403)} == {}
    assert all(EXPECTED[endpoint].kind in ("webhook", "service") for endpoint in CSRF_EXEMPT)
    assert changed_tables(before, snapshot(world.app)) == {}
