"""On PostgreSQL, concurrent deliveries of the same payment and concurrent ticks change things exactly once."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from portal.audit import AuditLog
from portal.billing.models import Order, SubscriptionPeriod
from portal.billing.orders import create_order
from portal.billing.settlement import apply_paid_order
from portal.billing.tick import tick
from tests.billing.terms import msk

THREADS = 10


def _run_together(n, fn):
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = []

    def worker(i):
        try:
            barrier.wait(timeout=10)
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    return results


def test_ten_concurrent_deliveries_activate_one_period(pg_url, app, db, make_account, order_for):
    account = make_account()
    order = order_for(account, "users-24", 12, msk(2026, 5, 1))
    maker = app.extensions["portal.db"].sessionmaker

    def deliver(i):
        with maker() as session:
            applied = apply_paid_order(session, order.id, now=msk(2026, 5, 1, 12, 1), reference="pay-42")
            session.commit()
            return applied

    results = _run_together(THREADS, deliver)
    assert results.count(True) == 1 and results.count(False) == THREADS - 1
    periods = db.scalars(sa.select(SubscriptionPeriod).where(SubscriptionPeriod.account_id == account.id)).all()
    assert len(periods) == 1 and periods[0].plan_code == "users-24"
    paid_audits = db.scalar(
        sa.select(sa.func.count())
        .select_from(AuditLog)
        .where(AuditLog.account_id == account.id, AuditLog.action == "billing.order_paid")
    )
    assert paid_audits == 1
    db.expire_all()
    assert db.get(Order, order.id).status == "paid"


def test_concurrent_create_order_with_one_key_makes_one_order(pg_url, app, db, make_account):
    account = make_account()
    maker = app.extensions["portal.db"].sessionmaker

    def create(i):
        with maker() as session:
            order = create_order(
                session,
                actor=None,
                account_id=account.id,
                plan_code="users-12",
                months=12,
                payer_type="card",
                license_version="2026-01",
                idempotency_key="double-click-key",
                now=msk(2026, 5, 1),
            )
            session.commit()
            return order.id

    ids = _run_together(THREADS, create)
    assert len(set(ids)) == 1
    assert db.scalar(sa.select(sa.func.count()).select_from(Order)) == 1


def test_ticks_on_several_servers_record_each_expiry_once(pg_url, app, db, make_account, buy):
    accounts = [make_account() for _ in range(5)]
    for a in accounts:
        buy(a, "users-12", 6, msk(2026, 1, 10))
    maker = app.extensions["portal.db"].sessionmaker

    def run_tick(i):
        with maker() as session:
            return tick(session, msk(2026, 7, 10, 0, 1))

    results = _run_together(4, run_tick)
    assert sum(len(r) for r in results) == 5
    expired = db.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.action == "billing.expired"))
    assert expired == 5
