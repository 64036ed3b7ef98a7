"""The limits API: the messenger backend (bearer service token) and the signed-in portal user (session)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from devtools.demo import DEMO_MEMBERS, DEMO_OWNER, DEMO_SMALL_OWNER, seed_demo_data
from portal.accounts.models import Account, Membership, Role, User
from portal.billing.catalog import GB
from portal.seats.events import register_membership_listener, unregister_membership_listener
from portal.seats.queries import count_active

TOKEN = "test-messenger-token"  # tests/conftest.py sets MESSENGER_API_TOKEN to it
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def demo(app, db):
    with app.app_context():  # features' demo data may read settings (e.g. the license version)
        return seed_demo_data(db)


@pytest.fixture
def events():
    seen = []

    def listener(_db, event):
        seen.append(event)

    register_membership_listener(listener)
    yield seen
    unregister_membership_listener(listener)


def _user_id(db, phone: str) -> int:
    return db.scalar(sa.select(User.id).where(User.phone == phone))


def _active(db, account) -> int:
    db.expire_all()
    return count_active(db, account.id)


def test_limits_of_the_over_limit_demo_company(client, demo):
    big = demo["big"]
    resp = client.get(f"/api/v1/accounts/{big.id}/limits", headers=AUTH)
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    assert resp.get_json() == {
        "account_id": big.id,
        "plan": "users-5",
        "seats": {"used": 9, "limit": 5},
        "storage": {"used_bytes": 0, "limit_bytes": 2147483648},
        "over_limit": True,
        "reasons": ["seats"],
        "suggested_plan": {"code": "users-12", "price_6_months": 594000},
    }
    assert resp.headers["Cache-Control"] == "no-store"
    small = client.get(f"/api/v1/accounts/{demo['small'].id}/limits", headers=AUTH).get_json()
    assert small["over_limit"] is False and small["reasons"] == [] and small["suggested_plan"] is None


def _token_endpoints(account_id: int, user_id: int) -> list[tuple[str, str, dict | None]]:
    return [
        ("GET", f"/api/v1/accounts/{account_id}/limits", None),
        ("PUT", f"/api/v1/accounts/{account_id}/storage", {"used_bytes": 1}),
        ("GET", f"/api/v1/accounts/{account_id}/users", None),
        ("POST", f"/api/v1/accounts/{account_id}/users", {"phone": "+79165550100", "name": "Иван"}),
        ("POST", f"/api/v1/accounts/{account_id}/users/{user_id}/deactivate", None),
        ("POST", f"/api/v1/accounts/{account_id}/users/{user_id}/reactivate", None),
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer тест"},
    ],
    ids=["missing", "wrong", "longer", "basic", "no-scheme", "empty", "non-ascii"],
)
def test_every_token_endpoint_refuses_without_the_token(db, client, demo, headers):
    big = demo["big"]
    boris = _user_id(db, DEMO_MEMBERS[0][0])
    for method, path, body in _token_endpoints(big.id, boris):
        resp = client.open(path, method=method, json=body, headers=headers)
        assert resp.status_code == 401, (method, path)
        assert "Bearer" in resp.get_json()["error"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert _active(db, big) == 9
    assert db.scalar(sa.select(Account.storage_used_bytes).where(Account.id == big.id)) == 0


def test_a_signed_in_session_is_not_a_service_token(client, auth, demo):
    auth.login(DEMO_OWNER)
    assert client.get(f"/api/v1/accounts/{demo['big'].id}/limits").status_code == 401


def test_unknown_account_is_404_everywhere(db, client, demo):
    boris = _user_id(db, DEMO_MEMBERS[0][0])
    for method, path, body in _token_endpoints(999_999, boris):
        resp = client.open(path, method=method, json=body, headers=AUTH)
        assert resp.status_code == 404, (method, path)
        assert resp.get_json()["error"] == "Аккаунт не найден."
    assert db.scalars(sa.select(User).where(User.phone == "+79165550100")).first() is None


def test_storage_report_updates_the_limits(client, make_account):
    account = make_account()  # the free plan: 2 GB
    resp = client.put(f"/api/v1/accounts/{account.id}/storage", json={"used_bytes": 3 * GB}, headers=AUTH)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["storage"] == {"used_bytes": 3 * GB, "limit_bytes": 2 * GB}
    assert body["over_limit"] is True and body["reasons"] == ["storage"]
    assert body["suggested_plan"] == {"code": "users-12", "price_6_months": 594000}
    assert client.put(f"/api/v1/accounts/{account.id}/storage", json={"used_bytes": 0}, headers=AUTH).status_code == 200
    assert client.get(f"/api/v1/accounts/{account.id}/limits", headers=AUTH).get_json()["storage"]["used_bytes"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"used_bytes": -1},
        {"used_bytes": 1.5},
        {"used_bytes": 1.0},
        {"used_bytes": "100"},
        {"used_bytes": True},
        {"used_bytes": None},
        {"used_bytes": [1]},
        {"used_bytes": 2**63},
        {},
        [1],
        "100",
    ],
)
def test_storage_refuses_anything_but_a_non_negative_integer(db, client, demo, body):
    small = demo["small"]
    client.put(f"/api/v1/accounts/{small.id}/storage", json={"used_bytes": 12345}, headers=AUTH)
    resp = client.put(f"/api/v1/accounts/{small.id}/storage", json=body, headers=AUTH)
    assert resp.status_code == 400
    assert resp.get_json()["error"]
    db.expire_all()
    assert db.scalar(sa.select(Account.storage_used_bytes).where(Account.id == small.id)) == 12345


def test_storage_refuses_a_body_that_is_not_json(client, demo):
    resp = client.put(
        f"/api/v1/accounts/{demo['small'].id}/storage", data="used_bytes=5", headers=AUTH, content_type="text/plain"
    )
    assert resp.status_code == 400 and "JSON" in resp.get_json()["error"]


def test_list_users(db, client, demo):
    big = demo["big"]
    resp = client.get(f"/api/v1/accounts/{big.id}/users", headers=AUTH)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["account_id"] == big.id and len(body["users"]) == 9
    anna = body["users"][0]
    assert anna == {
        "id": _user_id(db, DEMO_OWNER),
        "phone": DEMO_OWNER,
        "name": "Анна Смирнова",
        "email": None,
        "role": "owner",
        "status": "active",
        "source": "portal",
        "crm_user_id": None,
        "department_ids": [],
    }
    client.post(f"/api/v1/accounts/{big.id}/users/{_user_id(db, DEMO_MEMBERS[0][0])}/deactivate", headers=AUTH)
    deactivated = client.get(f"/api/v1/accounts/{big.id}/users?status=deactivated", headers=AUTH).get_json()
    assert [u["phone"] for u in deactivated["users"]] == [DEMO_MEMBERS[0][0]]
    active = client.get(f"/api/v1/accounts/{big.id}/users?status=active", headers=AUTH).get_json()
    assert len(active["users"]) == 8
    bad = client.get(f"/api/v1/accounts/{big.id}/users?status=gone", headers=AUTH)
    assert bad.status_code == 400 and bad.get_json()["field"] == "status"


def test_add_user_goes_through_the_directory(db, client, demo, events):
    small = demo["small"]
    before = _active(db, small)
    resp = client.post(
        f"/api/v1/accounts/{small.id}/users",
        json={"phone": "8 916 555-01-01", "name": "Ирина Белова", "email": "irina@example.ru"},
        headers=AUTH,
    )
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["created"] is True
    assert body["user"]["phone"] == "+79165550101" and body["user"]["source"] == "messenger"
    assert body["user"]["role"] == "member" and body["user"]["status"] == "active"
    assert body["limits"]["seats"]["used"] == before + 1
    assert _active(db, small) == before + 1
    assert [(e.kind.value, e.source) for e in events] == [("added", "messenger")]


def test_adding_beyond_the_plan_is_allowed_and_reported(db, client, demo):
    big = demo["big"]
    resp = client.post(
        f"/api/v1/accounts/{big.id}/users", json={"phone": "+79165550102", "name": "Десятый"}, headers=AUTH
    )
    assert resp.status_code == 201
    limits = resp.get_json()["limits"]
    assert limits["seats"] == {"used": 10, "limit": 5} and limits["over_limit"] is True


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"phone": "12345", "name": "Иван"}, 400, "phone"),
        ({"name": "Иван"}, 400, "phone"),
        ({"phone": 79165550103, "name": "Иван"}, 400, "phone"),
        ({"phone": "+79165550103"}, 400, "name"),
        ({"phone": "+79165550103", "name": "Иван", "email": "nope"}, 400, "email"),
        ({"phone": "+79165550103", "name": "Иван", "role": "admin"}, 400, "role"),
        ({"phone": "+79990000020", "name": "Мария"}, 409, "phone"),  # active already
    ],
)
def test_add_user_errors(db, client, demo, events, body, status, field):
    small = demo["small"]
    before = _active(db, small)
    resp = client.post(f"/api/v1/accounts/{small.id}/users", json=body, headers=AUTH)
    assert resp.status_code == status
    payload = resp.get_json()
    assert payload["field"] == field and payload["error"]
    assert _active(db, small) == before and events == []


def test_add_user_needs_a_json_object(client, demo):
    resp = client.post(f"/api/v1/accounts/{demo['small'].id}/users", json=["+79165550104"], headers=AUTH)
    assert resp.status_code == 400 and "JSON" in resp.get_json()["error"]


def test_duplicate_message_names_the_person(client, demo):
    resp = client.post(
        f"/api/v1/accounts/{demo['small'].id}/users", json={"phone": "+7 999 000-00-20", "name": "Мария"}, headers=AUTH
    )
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "Пользователь с телефоном +7 999 000-00-20 уже есть в компании: Мария Соколова."


def test_deactivate_and_re_add(db, client, demo, events):
    small = demo["small"]
    maria = _user_id(db, "+79990000020")
    resp = client.post(f"/api/v1/accounts/{small.id}/users/{maria}/deactivate", headers=AUTH)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["user"]["status"] == "deactivated" and body["limits"]["seats"]["used"] == 3
    again = client.post(f"/api/v1/accounts/{small.id}/users/{maria}/deactivate", headers=AUTH)
    assert again.status_code == 200  # idempotent: a retried call is harmless
    readd = client.post(
        f"/api/v1/accounts/{small.id}/users", json={"phone": "+79990000020", "name": "Мария"}, headers=AUTH
    )
    assert readd.status_code == 200 and readd.get_json()["created"] is False
    assert readd.get_json()["user"]["status"] == "active"
    assert [(e.kind.value, e.source) for e in events] == [("deactivated", "messenger"), ("reactivated", "messenger")]


def test_a_user_of_another_account_is_404(db, client, demo):
    boris = _user_id(db, DEMO_MEMBERS[0][0])  # in the big company only
    for action in ("deactivate", "reactivate"):
        resp = client.post(f"/api/v1/accounts/{demo['small'].id}/users/{boris}/{action}", headers=AUTH)
        assert resp.status_code == 404
        assert resp.get_json()["error"] == "Пользователь не найден в этой компании."
    assert _active(db, demo["big"]) == 9


def test_the_last_owner_cannot_be_deactivated(db, client, demo):
    small = demo["small"]
    owner = _user_id(db, DEMO_SMALL_OWNER)
    resp = client.post(f"/api/v1/accounts/{small.id}/users/{owner}/deactivate", headers=AUTH)
    assert resp.status_code == 409
    assert "хотя бы один активный владелец" in resp.get_json()["error"]
    db.expire_all()
    status = db.scalar(
        sa.select(Membership.status).where(Membership.account_id == small.id, Membership.user_id == owner)
    )
    assert status == "active"


def test_session_limits_for_the_signed_in_user(client, auth, demo):
    resp = client.get("/api/v1/limits")
    assert resp.status_code == 401 and resp.get_json()["error"]
    auth.login(DEMO_MEMBERS[2][0])
    body = client.get("/api/v1/limits").get_json()
    assert body["account_id"] == demo["big"].id and body["seats"] == {"used": 9, "limit": 5}
    assert body["suggested_plan"] == {"code": "users-12", "price_6_months": 594000}
    auth.logout()
    auth.login(DEMO_SMALL_OWNER)
    assert client.get("/api/v1/limits").get_json()["over_limit"] is False


def test_over_1000_users_support_is_the_answer(db, client, make_account):
    from tests.seats.conftest import insert_members

    account = make_account()
    insert_members(db, account, 1000)
    body = client.get(f"/api/v1/accounts/{account.id}/limits", headers=AUTH).get_json()
    assert body["seats"] == {"used": 1001, "limit": 5}
    assert body["suggested_plan"] == {"code": None, "contact_support": True}


def test_api_views_declare_access(app):
    for name in (
        "api.account_limits",
        "api.account_storage_update",
        "api.account_users_list",
        "api.account_user_add",
        "api.account_user_deactivate",
        "api.account_user_reactivate",
    ):
        assert app.view_functions[name]._access == ("public",)
    assert app.view_functions["api.limits_current"]._access == tuple(r.value for r in Role)
