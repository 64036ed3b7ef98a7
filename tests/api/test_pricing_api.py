"""The public pricing API: exact bodies computed from the published terms, and its errors."""

from __future__ import annotations

import pytest

from tests.billing.terms import DISCOUNT, PUBLISHED, kopecks_per_month, period_total

ALLOWED = [6, 9, 12, 24]


def test_plans_lists_the_self_service_catalog_in_ascending_order(client):
    resp = client.get("/api/v1/plans")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["currency"] == "RUB"
    assert body["periods"] == [{"months": m, "discount_percent": DISCOUNT[m]} for m in ALLOWED]
    assert body["plans"] == [
        {
            "code": code,
            "seats": seats,
            "storage_bytes": storage,
            "monthly_price": roubles * 100,
            "prices": {str(m): period_total(code, m) for m in ALLOWED},
        }
        for code, (seats, storage, roubles) in PUBLISHED.items()
    ]
    users_12 = body["plans"][1]
    assert users_12 == {
        "code": "users-12",
        "seats": 12,
        "storage_bytes": 5368709120,
        "monthly_price": 99000,
        "prices": {"6": 594000, "9": 846450, "12": 1104840, "24": 2138400},
    }
    # Widgets on the vendor's site may read it.
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


def test_custom_plans_never_appear_in_the_public_catalog(client, db, make_account):
    from portal.billing.custom_plans import create_custom_plan
    from tests.billing.terms import msk

    account = make_account()
    create_custom_plan(
        db,
        actor=None,
        account_id=account.id,
        seats=2000,
        storage_bytes=4 * 1024**4,
        monthly_price=5_000_000,
        now=msk(2026, 3, 1),
    )
    db.commit()
    codes = [p["code"] for p in client.get("/api/v1/plans").get_json()["plans"]]
    assert codes == list(PUBLISHED)
    assert client.get(f"/api/v1/quote?plan=custom-{account.id}-2000&months=12").status_code == 404


def test_quote_users_12_for_9_months(client):
    resp = client.get("/api/v1/quote?plan=users-12&months=9")
    assert resp.status_code == 200
    assert resp.get_json() == {
        "plan": "users-12",
        "months": 9,
        "monthly_price": 99000,
        "subtotal": 891000,
        "discount_percent": 5,
        "discount": 44550,
        "total": 846450,
        "currency": "RUB",
    }


@pytest.mark.parametrize("code", list(PUBLISHED))
@pytest.mark.parametrize("months", ALLOWED)
def test_every_plan_and_period_quotes_the_published_figure(client, code, months):
    body = client.get(f"/api/v1/quote?plan={code}&months={months}").get_json()
    subtotal = kopecks_per_month(code) * months
    assert body["subtotal"] == subtotal
    assert body["discount_percent"] == DISCOUNT[months]
    assert body["total"] == period_total(code, months)
    assert body["discount"] == subtotal - period_total(code, months)


def test_the_free_plan_quotes_zero(client):
    body = client.get("/api/v1/quote?plan=users-5&months=24").get_json()
    assert (body["subtotal"], body["discount"], body["total"]) == (0, 0, 0)


def test_an_unknown_plan_is_404_with_an_error(client):
    resp = client.get("/api/v1/quote?plan=users-13&months=12")
    assert resp.status_code == 404
    assert resp.get_json() == {"error": "Тариф «users-13» не найден."}


@pytest.mark.parametrize("query", ["months=3", "months=7", "months=abc", "", "months=", "months=6.0", "months=-6"])
def test_a_period_not_offered_is_400_with_the_allowed_months(client, query):
    resp = client.get(f"/api/v1/quote?plan=users-12&{query}")
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["allowed_months"] == ALLOWED
    assert "Можно оплатить 6, 9, 12 или 24 месяца" in body["error"]


def test_a_missing_plan_is_400(client):
    resp = client.get("/api/v1/quote?months=12")
    assert resp.status_code == 400 and "error" in resp.get_json()


def test_no_sign_in_and_no_csrf_needed_and_other_methods_refused(client):
    assert client.get("/api/v1/plans").status_code == 200
    resp = client.post("/api/v1/quote?plan=users-12&months=9")
    assert resp.status_code == 405 and "error" in resp.get_json()
