"""Exactly-once under concurrency, and the sandbox's notification over real HTTP to a server on a local port."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from portal.billing.models import SubscriptionPeriod
from portal.billing.orders import create_order
from portal.billing.subscriptions import get_subscription_state
from portal.db import utcnow
from portal.payments import attempts
from portal.payments.models import PaymentNotification
from portal.payments.providers import get_provider
from portal.payments.providers.sandbox import SIGNATURE_HEADER, check_card, sign
from tests.conftest import csrf_token
from tests.payments.conftest import audit_actions, only_order, payments_of

DELIVERIES = 50


@contextmanager
def serving(app) -> Iterator[str]:
    """The app on a free local port, in threads, as a real WSGI server would run it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def paid_sandbox_notification(app, db, account) -> tuple[bytes, dict[str, str]]:
    """An order paid at the sandbox whose notification has not reached the portal yet."""
    sandbox = get_provider(app, "sandbox")
    now = utcnow()
    with app.app_context():
        order = create_order(
            db,
            actor=None,
            account_id=account.id,
            plan_code="users-12",
            months=6,
            payer_type="card",
            license_version="2026-01",
            idempotency_key="concurrency-test-order",
            now=now,
        )
        db.commit()
        payment, url = attempts.start_card_payment(
            db, order, None, provider=sandbox, return_url=f"http://localhost/payments/return/{order.id}", now=now
        )
    assert url is not None
    row, changed = sandbox.complete(
        payment.provider_payment_id,
        method="bank_card",
        card=check_card("4111111111111111", "12/30", "123", date(2026, 1, 1)),
    )
    assert changed
    body = sandbox.notification_body(row)
    return body, {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(app.config["SANDBOX_WEBHOOK_SECRET"], body),
    }


def assert_activated_once(db, account, outcomes: list[str]) -> None:
    assert Counter(outcomes) == {"activated": 1, "already_settled": DELIVERIES - 1}
    assert only_order(db, account.id).status == "paid"
    assert audit_actions(db, account.id).count("billing.order_paid") == 1
    assert audit_actions(db, account.id).count("payment.succeeded") == 1
    assert db.scalar(sa.select(sa.func.count()).select_from(SubscriptionPeriod)) == 1
    assert db.scalar(sa.select(sa.func.count()).select_from(PaymentNotification)) == DELIVERIES
    [payment] = payments_of(db, account.id)
    assert payment.status == "succeeded"


def test_fifty_concurrent_deliveries_activate_once(app, db, make_account):
    account = make_account()
    body, headers = paid_sandbox_notification(app, db, account)
    start = threading.Barrier(DELIVERIES)
    outcomes: list[str] = []
    lock = threading.Lock()

    def deliver() -> None:
        client = app.test_client()
        start.wait()
        resp = client.post("/payments/webhook/sandbox", data=body, headers=headers)
        with lock:
            outcomes.append(resp.get_json()["outcome"] if resp.status_code == 200 else f"HTTP {resp.status_code}")

    threads = [threading.Thread(target=deliver) for _ in range(DELIVERIES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert_activated_once(db, account, outcomes)


def test_fifty_concurrent_deliveries_over_http_activate_once_on_postgresql(pg_url, app, db, make_account):
    account = make_account()
    body, headers = paid_sandbox_notification(app, db, account)
    start = threading.Barrier(DELIVERIES)
    outcomes: list[str] = []
    lock = threading.Lock()
    with serving(app) as base:

        def deliver() -> None:
            start.wait()
            resp = requests.post(f"{base}/payments/webhook/sandbox", data=body, headers=headers, timeout=120)
            with lock:
                outcomes.append(resp.json()["outcome"] if resp.status_code == 200 else f"HTTP {resp.status_code}")

        threads = [threading.Thread(target=deliver) for _ in range(DELIVERIES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
    assert_activated_once(db, account, outcomes)


def test_sandbox_notifies_the_portal_over_real_http(app, client, db, make_account, auth):
    account = make_account(owner_phone="+79163330000")
    auth.login("+79163330000")
    with serving(app) as base:
        app.config["BASE_URL"] = base  # where the sandbox (and the payer's browser) reach the portal
        page = client.get("/checkout?plan=users-24&months=12").get_data(as_text=True)
        from tests.payments.conftest import form_fields

        data = form_fields(page) | {"payer_type": "card", "accept_license": "y"}
        pay_url = client.post("/checkout", data=data).headers["Location"]
        assert pay_url.startswith(f"{base}/sandbox/pay/sbx_")
        path = pay_url.removeprefix(base)
        resp = client.post(
            path,
            data={
                "csrf_token": csrf_token(client),
                "number": "4111 1111 1111 1111",
                "expiry": "12/30",
                "cvc": "123",
                "action": "card",
            },
        )
        # By the time the payer is sent back, the server has already taken the notification and applied the order.
        order = only_order(db, account.id)
        assert resp.headers["Location"] == f"{base}/payments/return/{order.id}"
        assert order.status == "paid"
    notes = db.scalars(sa.select(PaymentNotification)).all()
    assert [(n.outcome, n.remote_addr) for n in notes] == [("activated", "127.0.0.1")]
    assert get_subscription_state(db, account.id, utcnow()).plan.code == "users-24"
