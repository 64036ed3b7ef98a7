"""Public pricing API: the catalog and quotes, for the vendor's site widgets and the apps; no sign-in."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, request
from flask_login import current_user

from portal.accounts.access import current_membership, public
from portal.api.views import bp
from portal.billing.catalog import ALLOWED_MONTHS, PERIODS, PLANS, Plan, get_plan
from portal.billing.display import allowed_months_ru
from portal.billing.pricing import quote
from portal.billing.subscriptions import PurchaseError
from portal.db import get_db, utcnow
from portal.money import NBSP
from portal.payments.offer import get_offer

CURRENCY = "RUB"


def _public_json(payload: dict[str, Any], status: int = 200) -> Response:
    # Not jsonify: it sorts keys, and periods read best as 6, 9, 12, 24.
    resp = current_app.response_class(
        json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json"
    )
    # Published prices: any site may embed them, and a few minutes of caching is harmless.
    resp.headers["Access-Control-Allow-Origin"] = "*"
    if status == 200:
        resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


class QuoteRefused(Exception):
    """A quote the API cannot give: the JSON it answers with and its HTTP status."""

    def __init__(self, payload: dict[str, Any], status: int) -> None:
        super().__init__(payload["error"])
        self.payload = payload
        self.status = status


def _months_refused(raw: str | None) -> QuoteRefused:
    shown = "не указан" if raw is None or raw == "" else f"«{raw[:20]}» не предлагается"
    return QuoteRefused(
        {
            "error": f"Период {shown}. Можно оплатить {allowed_months_ru().replace(NBSP, ' ')}: например, ?months=12.",
            "allowed_months": list(ALLOWED_MONTHS),
        },
        400,
    )


def public_quote(code: str | None, raw: str | None) -> tuple[Plan, dict[str, Any]]:
    """The plan and its published price for `raw` months (as the query gives them); QuoteRefused says what is off."""
    if not code:
        raise QuoteRefused({"error": "Не указан тариф: ?plan=users-12."}, 400)
    plan = get_plan(code)
    if plan is None:
        raise QuoteRefused({"error": f"Тариф «{code[:64]}» не найден."}, 404)
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 3 or int(raw) not in PERIODS:
        raise _months_refused(raw)
    q = quote(plan, int(raw))
    return plan, {
        "plan": plan.code,
        "months": q.months,
        "monthly_price": q.monthly_price,
        "subtotal": q.subtotal,
        "discount_percent": q.discount_percent,
        "discount": q.discount,
        "total": q.total,
        "currency": CURRENCY,
    }


@bp.route("/plans")
@public
def plans() -> Response:
    return _public_json(
        {
            "currency": CURRENCY,
            "periods": [{"months": m, "discount_percent": PERIODS[m]} for m in ALLOWED_MONTHS],
            "plans": [
                {
                    "code": p.code,
                    "seats": p.seats,
                    "storage_bytes": p.storage_bytes,
                    "monthly_price": p.monthly_price,
                    "prices": {str(m): quote(p, m).total for m in ALLOWED_MONTHS},
                }
                for p in PLANS
            ],
        }
    )


@bp.route("/quote")
@public
def quote_view() -> Response:
    try:
        plan, payload = public_quote(request.args.get("plan"), request.args.get("months"))
    except QuoteRefused as exc:
        return _public_json(exc.payload, exc.status)
    account_offer = _offer_for_signed_in(plan, payload["months"])
    if account_offer is None:
        return _public_json(payload)
    # A signed-in company gets what its checkout will charge (an upgrade is the co-termed extra payment, the
    # balance pays first): one figure everywhere. Personal, so neither shared nor cached.
    payload["for_account"] = account_offer
    resp = current_app.response_class(json.dumps(payload, ensure_ascii=False), mimetype="application/json")
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["Vary"] = "Cookie"
    return resp


def _offer_for_signed_in(plan: Plan, months: int) -> dict[str, Any] | None:
    if not current_user.is_authenticated:
        return None
    membership = current_membership()
    if membership is None:
        return None
    try:
        return get_offer(get_db(), membership.account_id, plan, months, utcnow()).as_json()
    except PurchaseError as exc:
        return {"error": str(exc)}
