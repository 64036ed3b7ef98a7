"""Whatever reaches the payment webhooks — garbage, forged or signed nonsense, near-real notifications — is answered
with a 4xx (or a calm 200 for a real payment still pending) and activates nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from hypothesis import given
from hypothesis import strategies as st

from portal.payments.providers.sandbox import SIGNATURE_HEADER, sign
from tests.fuzz.conftest import FUZZ, hostile_text
from tests.security.conftest import changed_tables, snapshot
from tests.security.world import World

YOOKASSA_IP = "185.71.76.10"
# A notification's outcome may be logged; nothing else may change: no payment settled, no order paid, no plan.
LOGGED = {"payment_notifications", "audit_log"}


def _statuses() -> st.SearchStrategy[str]:
    return st.sampled_from(["succeeded", "canceled", "pending", "waiting_for_capture", "", "SUCCEEDED"])


def notification(world: World) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies shaped like a provider's notification, pointing at real and made-up payments and orders."""
    ids = st.one_of(st.just(world.sandbox_payment), hostile_text(), st.uuids().map(str))
    amount = st.fixed_dictionaries(
        {"value": st.one_of(hostile_text(), st.decimals(allow_nan=True).map(str)), "currency": hostile_text()}
    )
    obj = st.fixed_dictionaries(
        {"id": ids, "status": _statuses()},
        optional={
            "amount": amount,
            "metadata": st.fixed_dictionaries(
                {}, optional={"order_id": st.one_of(hostile_text(), st.integers().map(str))}
            ),
            "paid": st.booleans(),
        },
    )
    return st.fixed_dictionaries(
        {"type": st.sampled_from(["notification", "", "x"]), "event": st.sampled_from(["payment.succeeded", "x"])},
        optional={"object": st.one_of(obj, hostile_text(), st.none(), st.lists(st.integers()))},
    )


def bodies(world: World) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        hostile_text().map(str.encode),
        notification(world).map(lambda d: json.dumps(d).encode()),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=10,
        ).map(lambda d: json.dumps(d).encode()),
    )


@pytest.fixture
def provider_api() -> Iterator[responses.RequestsMock]:
    """YooKassa's API answered locally: it knows none of these payments (and the network is never reached)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(
            responses.GET,
            re.compile(r"https://api\.yookassa\.ru/v3/payments/.*"),
            status=404,
            json={"type": "error", "code": "not_found", "description": "Payment not found"},
        )
        yield mock


def _check(world: World, resp: Any, before: dict[str, str], what: Any) -> None:
    status = resp.status_code
    assert status < 500 or status == 503, f"{status} for {what!r}"
    assert resp.is_json and resp.get_json().get("error" if status >= 400 else "status"), what
    changed = set(changed_tables(before, snapshot(world.app))) - LOGGED
    assert changed == set(), f"{what!r} changed {changed}"


def test_the_sandbox_webhook_takes_anything_without_changing_anything(world: World) -> None:
    client = world.app.test_client()
    secret = world.app.config["SANDBOX_WEBHOOK_SECRET"]

    @FUZZ
    @given(body=bodies(world), signed=st.booleans(), signature=hostile_text())
    def deliver(body: bytes, signed: bool, signature: str) -> None:
        before = snapshot(world.app)
        header = sign(secret, body) if signed else signature
        headers = {"Content-Type": "application/json"}
        if header.isascii() and "\n" not in header and "\r" not in header:
            headers[SIGNATURE_HEADER] = header
        resp = client.post("/payments/webhook/sandbox", data=body, headers=headers)
        if not signed:
            assert resp.status_code in (400, 401, 403), resp.status_code
        _check(world, resp, before, (body, signed))

    deliver()


def test_the_yookassa_webhook_takes_anything_without_changing_anything(
    world: World, provider_api: responses.RequestsMock
) -> None:
    world.app.config.update(YOOKASSA_SHOP_ID="123456", YOOKASSA_SECRET_KEY="test_secret")
    world.app.extensions.get("portal.payments.providers", {}).pop("yookassa", None)
    client = world.app.test_client()

    @FUZZ
    @given(body=bodies(world), trusted=st.booleans())
    def deliver(body: bytes, trusted: bool) -> None:
        before = snapshot(world.app)
        remote = YOOKASSA_IP if trusted else "203.0.113.5"
        resp = client.post(
            "/payments/webhook/yookassa",
            data=body,
            headers={"Content-Type": "application/json"},
            environ_base={"REMOTE_ADDR": remote},
        )
        if not trusted:
            assert resp.status_code == 403
        _check(world, resp, before, (body, trusted))

    deliver()


def test_unknown_providers_and_oversized_bodies_are_refused(world: World) -> None:
    client = world.app.test_client()
    assert client.post("/payments/webhook/paypal", data=b"{}").status_code == 404
    resp = client.post("/payments/webhook/sandbox", data=b"{" + b" " * 70_000 + b"}")
    assert resp.status_code == 413 and resp.get_json()["error"]
