"""`billing tick` run by two servers at the same moment (cron on each): every change happens, and happens once."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from portal.audit import AuditLog
from portal.billing.models import Order
from portal.billing.orders import create_order
from portal.billing.settlement import apply_paid_order
from portal.billing.subscriptions import get_subscription_state
from portal.billing.tick import tick
from portal.billing.trial import start_trial
from portal.db import utcnow
from portal.documents import render
from portal.documents.models import StoredFile, Upd
from portal.payments import attempts
from portal.payments.providers import get_provider
from portal.payments.providers.sandbox import check_card
from portal.payments.statement_lines import mark_invoice_paid
from tests.documents.factories import give_requisites, issue


def _buy(db: Any, account: Any, plan: str, months: int, when: Any) -> Order:
    order = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code=plan,
        months=months,
        payer_type="card",
        license_version="2026-01",
        idempotency_key=f"tick-{account.id}-{plan}-{when.timestamp()}",
        now=when,
    )
    db.commit()
    return order


def _audits(db: Any) -> dict[str, int]:
    db.expire_all()
    rows = db.execute(sa.select(AuditLog.action, sa.func.count()).group_by(AuditLog.action)).all()
    return dict(rows)


def run_together(app: Any, fns: list[Any]) -> list[Any]:
    """Start the callables at one barrier, each in its own thread with its own session and app context."""
    barrier = threading.Barrier(len(fns))
    results: list[Any] = [None] * len(fns)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with app.app_context(), app.extensions["portal.db"].sessionmaker() as session:
                barrier.wait(timeout=30)
                results[i] = fns[i](session)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [], errors
    return results


def test_two_ticks_at_once_apply_every_change_exactly_once(pg_url, app, db, make_account, monkeypatch):
    tick_at = utcnow() + timedelta(days=1)
    long_ago = tick_at - timedelta(days=200)
    expired, downgraded, trial, unpaid, invoiced, lost_notice = (make_account(name=f"ООО «Т{i}»") for i in range(6))

    # A paid half-year that ended; a bigger plan whose scheduled smaller successor starts; a trial month that ended.
    apply_paid_order(db, _buy(db, expired, "users-12", 6, long_ago).id, now=long_ago, reference="t1")
    apply_paid_order(db, _buy(db, downgraded, "users-24", 6, long_ago).id, now=long_ago, reference="t2")
    db.commit()
    later = long_ago + timedelta(days=1)
    apply_paid_order(db, _buy(db, downgraded, "users-12", 6, later).id, now=later, reference="t3")
    start_trial(db, actor=None, account_id=trial.id, plan_code="users-50", now=long_ago)
    db.commit()
    # A card order nobody paid, past its day.
    _buy(db, unpaid, "users-12", 6, tick_at - timedelta(days=2))
    # An invoice paid while the УПД could not be rendered: the tick forms it.
    monkeypatch.setattr(render, "render_invoice_pdf", lambda ctx: f"%PDF-invoice {ctx['number']}".encode())
    give_requisites(db, invoiced)
    invoice = issue(app, db, invoiced, now=tick_at - timedelta(hours=1))

    def broken(ctx: Any) -> bytes:
        raise RuntimeError("рендер недоступен")

    monkeypatch.setattr(render, "render_upd_pdf", broken)
    with app.app_context():
        mark_invoice_paid(
            db,
            invoice.id,
            actor=None,
            bank_reference="п/п № 77",
            paid_on=date.today(),
            now=tick_at - timedelta(hours=1),
        )
    monkeypatch.setattr(render, "render_upd_pdf", lambda ctx: f"%PDF-upd {ctx['number']}".encode())
    # A card payment made at the sandbox whose notification never arrived.
    sandbox = get_provider(app, "sandbox")
    order = _buy(db, lost_notice, "users-50", 12, tick_at - timedelta(hours=2))
    with app.app_context():
        payment, _url = attempts.start_card_payment(
            db, order, None, provider=sandbox, return_url="http://localhost/r", now=tick_at - timedelta(hours=2)
        )
    sandbox.complete(
        payment.provider_payment_id,
        method="bank_card",
        card=check_card("4111111111111111", "12/30", "123", date(2026, 1, 1)),
    )

    before = _audits(db)
    results = run_together(app, [lambda s: tick(s, tick_at), lambda s: tick(s, tick_at)])

    done = results[0] + results[1]
    assert len(done) == len(set(done)), done  # nothing reported by both servers
    after = _audits(db)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    assert delta.get("billing.expired") == 1
    assert delta.get("billing.trial_expired") == 1
    assert delta.get("billing.scheduled_change_applied") == 1
    assert delta.get("billing.order_expired") == 1
    assert delta.get("billing.order_paid") == 1  # the lost notification, settled by re-reading the payment
    assert get_subscription_state(db, lost_notice.id, tick_at).plan.code == "users-50"
    assert get_subscription_state(db, downgraded.id, tick_at).plan.code == "users-12"
    assert get_subscription_state(db, expired.id, tick_at).plan.code == "users-5"
    # The УПД was rendered by one of them: one PDF and one XML in the store and in the database.
    db.expire_all()
    upd = db.scalars(sa.select(Upd).where(Upd.account_id == invoiced.id)).one()
    assert upd.status == "formed"
    files = db.scalars(sa.select(StoredFile).where(StoredFile.account_id == invoiced.id, StoredFile.kind.like("upd%")))
    assert sorted(f.kind for f in files) == ["upd_pdf", "upd_xml"]
    stored = sorted(p.suffix for p in (Path(app.config["DOCUMENT_STORE_PATH"]) / str(invoiced.id) / "upd").iterdir())
    assert stored == [".pdf", ".xml"]
    # And a third run, later, finds nothing left to do.
    with app.app_context():
        assert tick(db, tick_at + timedelta(minutes=5)) == []
