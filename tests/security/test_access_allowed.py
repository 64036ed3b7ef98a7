"""The other half of the matrix: those who may act are let through, and the messenger API's token is the only key."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from portal.accounts.models import Membership
from tests.conftest import RecordingSms, csrf_token
from tests.security.matrix import EXPECTED, expected, methods, url, url_map
from tests.security.world import ROLES, World

ALLOWED_POSTS = sorted(
    (rule.endpoint, role)
    for rule in url_map().iter_rules()
    if methods(rule) - {"GET"} and EXPECTED[rule.endpoint].kind not in ("service", "webhook")
    for role in ROLES
    if expected(EXPECTED[rule.endpoint], role, foreign_object=False) == "ok"
)


@pytest.mark.parametrize(("endpoint", "role"), ALLOWED_POSTS)
def test_allowed_post_reaches_the_view(endpoint: str, role: str, world: World, module_sms: RecordingSms) -> None:
    """With an empty form the view answers with its own message (a redirect back, or the form again), never a
    refusal and never an error page."""
    client = world.client_as(role, module_sms)
    token = csrf_token(client, {"staff": "/support", "visitor": "/login"}.get(role, "/plans"))
    for rule in (r for r in world.app.url_map.iter_rules() if r.endpoint == endpoint):
        verb = sorted(methods(rule) - {"GET"})[0]
        resp = client.open(url(rule, world, foreign=role == "stranger"), method=verb, data={"csrf_token": token})
        location = urlsplit(resp.headers.get("Location", "")).path
        assert resp.status_code not in (401, 403, 404, 405) and resp.status_code < 500, (endpoint, resp.status_code)
        # The sign-in steps send anyone without a pending sign-in back to its start; sign-out ends there too.
        assert location not in ("/login", "/support") or endpoint.startswith("accounts."), location
        resp.close()


TOKEN = {"Authorization": "Bearer test-messenger-token"}


def test_the_messenger_api_needs_its_token(world: World) -> None:
    client = world.app.test_client()
    own = world.own.account_id
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "test-messenger-token"}):
        resp = client.get(f"/api/v1/accounts/{own}/limits", headers=headers)
        assert resp.status_code == 401 and "токен" in resp.get_json()["error"]
        resp = client.post(
            f"/api/v1/accounts/{own}/users", json={"phone": "+79165550001", "name": "X"}, headers=headers
        )
        assert resp.status_code == 401
    resp = client.get(f"/api/v1/accounts/{own}/limits", headers=TOKEN)
    assert resp.status_code == 200 and resp.get_json()["account_id"] == own
    assert client.get("/api/v1/accounts/999999/limits", headers=TOKEN).status_code == 404


def test_the_api_does_not_reach_a_user_through_another_accounts_path(world: World) -> None:
    """The messenger asks about account A's user under account B's id: 404, and the user stays active."""
    client = world.app.test_client()
    stranger_member = world.other.ids["user_id"]
    path = f"/api/v1/accounts/{world.own.account_id}/users/{stranger_member}/deactivate"
    resp = client.post(path, headers=TOKEN)
    assert resp.status_code == 404
    with world.app.extensions["portal.db"].session() as db:
        status = db.scalar(
            sa.select(Membership.status).where(
                Membership.user_id == stranger_member, Membership.account_id == world.other.account_id
            )
        )
    assert status == "active"
