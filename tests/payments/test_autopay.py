"""Autopayment with consent: the owner ticks «Продлевать автоматически» at checkout, the sandbox saves the card, and
the billing tick warns, charges (the balance first), retries and falls back — the whole calendar on frozen days."""

from __future__ import annotations

import email
import email.policy
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from portal.accounts.models import Membership, Role
from portal.audit import AuditLog
from portal.billing.models import Order, SubscriptionPeriod
from portal.billing.orders import create_order
from portal.billing.subscriptions import get_subscription_state
from portal.billing.tick import tick as billing_tick
from portal.notices.models import Notice
from portal.notices.tasks import run_sweep
from portal.payments import autopay, ledger
from portal.payments.autopay_models import AutopayConsent, AutopayRenewal, SavedMethod
from portal.payments.models import Payment, Receipt, SandboxPayment
from portal.timeutil import format_date_ru, msk_midnight
from tests.conftest import post
from tests.payments.conftest import audit_actions, form_fields
from tests.payments.test_sandbox_flow import pay_with_card
from tests.support.smtp_fake import FakeSmtpState, fake_smtp_server

OWNER_EMAIL = "owner@romashka.example.ru"
PRICE_12_6 = 594000  # 990 ₽ × 6, no discount


@pytest.fixture
def smtp(app: Any) -> Iterator[FakeSmtpState]:
    with fake_smtp_server() as (host, port, state):
        app.config.update(EMAIL_BACKEND="smtp", SMTP_HOST=host, SMTP_PORT=port)
        yield state


def letters(state: FakeSmtpState) -> list[tuple[str, str]]:
    out = []
    for got in state.messages:
        msg = email.message_from_bytes(got.data, policy=email.policy.default)
        text = msg.get_body(("plain",)).get_content()
        out.append((str(msg["Subject"]).replace("\xa0", " "), text.replace("\xa0", " ")))
    return out


def at(day: date, hour: int = 9) -> datetime:
    return msk_midnight(day) + timedelta(hours=hour)


def tick(app, db, moment: datetime) -> list[str]:
    with app.app_context():
        return billing_tick(db, moment, grace_days=app.config["GRACE_DAYS"])


def sweep(app, db, moment: datetime) -> list[str]:
    with app.app_context():
        return run_sweep(db, moment)


def checkout_with_autopay(client, plan="users-12", months=6, tick_box=True):
    page = client.get(f"/checkout?plan={plan}&months={months}")
    assert page.status_code == 200
    data = form_fields(page.get_data(as_text=True))
    data.update(payer_type="card", accept_license="y")
    if tick_box:
        data["autopay"] = "y"
    return client.post("/checkout", data=data)


@pytest.fixture
def autopaid(app, client, db, owner, deliveries):
    """The owner paid users-12 for 6 months with 4111… and agreed to autopayment; returns the period's end."""
    return _autopaid(db, client, owner, "4111 1111 1111 1111")


def _autopaid(db, client, owner, card: str, plan: str = "users-12") -> date:
    for m in db.scalars(sa.select(Membership).where(Membership.account_id == owner.id, Membership.role == "owner")):
        m.email = OWNER_EMAIL
    db.commit()
    resp = checkout_with_autopay(client, plan=plan)
    assert resp.status_code == 302
    page = client.get(resp.headers["Location"].removeprefix("http://localhost")).get_data(as_text=True)
    assert "Карта будет сохранена для автоплатежа" in page
    pay_with_card(client, resp.headers["Location"], card)
    db.expire_all()
    period = db.scalars(sa.select(SubscriptionPeriod).where(SubscriptionPeriod.account_id == owner.id)).one()
    return period.ends_on


def renewal_of(db, account_id) -> AutopayRenewal | None:
    db.expire_all()
    return db.scalars(sa.select(AutopayRenewal).where(AutopayRenewal.account_id == account_id)).first()


def notice_keys(db, account_id) -> list[str]:
    db.expire_all()
    return [
        k.rsplit(":", 1)[0]
        for k in db.scalars(
            sa.select(Notice.key).where(Notice.account_id == account_id, Notice.topic == "autopay").order_by(Notice.id)
        )
    ]


def sandbox_charges(db) -> int:
    db.expire_all()
    return len([row for row in db.scalars(sa.select(SandboxPayment)) if (row.receipt or {}).get("payment_method_id")])


# --- consent at checkout ------------------------------------------------------------------------------------


def test_checkout_shows_the_terms_and_the_consent_is_recorded_with_the_saved_card(app, client, db, owner, deliveries):
    page = client.get("/checkout?plan=users-12&months=6").get_data(as_text=True).replace("\xa0", " ")
    assert "Продлевать автоматически" in page
    assert "5 940,00 ₽ каждые 6 месяцев" in page
    assert "за 3 дня до окончания оплаченного периода" in page  # when it is charged
    assert "за 5 дней до окончания придёт письмо" in page  # the warning
    assert "Отключить автоплатёж или удалить карту можно в любой момент" in page  # how to cancel
    assert f"Условия автоплатежа, ред.&nbsp;{autopay.AUTOPAY_TERMS_VERSION}" in page

    ends_on = _autopaid(db, client, owner, "4111 1111 1111 1111")
    consent = db.scalars(sa.select(AutopayConsent).where(AutopayConsent.account_id == owner.id)).one()
    method = db.scalars(sa.select(SavedMethod).where(SavedMethod.account_id == owner.id)).one()
    owner_user = db.scalars(
        sa.select(Membership).where(Membership.account_id == owner.id, Membership.role == Role.OWNER.value)
    ).one()
    assert (consent.status, consent.user_id, consent.plan_code, consent.months, consent.amount) == (
        "active",
        owner_user.user_id,
        "users-12",
        6,
        PRICE_12_6,
    )
    assert consent.terms_version == autopay.AUTOPAY_TERMS_VERSION
    assert "5 940,00 ₽ каждые 6 месяцев" in consent.terms_text.replace("\xa0", " ")
    assert consent.given_at is not None and consent.method_id == method.id
    assert (method.provider, method.title) == ("sandbox", "Карта •• 1111")
    assert method.method_id.startswith("pm_sbx_")
    assert "autopay.consent_given" in audit_actions(db, owner.id)
    assert ends_on > date.today()

    # The payments page names the card and the next step; the owner can switch it off there.
    text = client.get("/payments").get_data(as_text=True)
    assert "Карта •• 1111" in text and "Отключить автоплатёж" in text and "Удалить карту" in text
    assert "Автоплатёж включён: Карта •• 1111" in client.get("/").get_data(as_text=True)


def test_without_the_box_nothing_is_saved(app, client, db, owner, deliveries):
    resp = checkout_with_autopay(client, tick_box=False)
    pay_with_card(client, resp.headers["Location"], "4111 1111 1111 1111")
    assert db.scalar(sa.select(sa.func.count()).select_from(AutopayConsent)) == 0
    assert db.scalar(sa.select(sa.func.count()).select_from(SavedMethod)) == 0
    assert autopay.get_autopay(db, owner.id) is None


# --- the calendar -------------------------------------------------------------------------------------------


def test_notice_then_charge_then_the_period_is_renewed(app, db, owner, autopaid, smtp):
    end = autopaid
    assert tick(app, db, at(end - timedelta(days=6))) == []
    assert renewal_of(db, owner.id) is None

    tick(app, db, at(end - timedelta(days=5)))
    renewal = renewal_of(db, owner.id)
    assert (renewal.status, renewal.charge_on, renewal.amount) == ("noticed", end - timedelta(days=3), PRICE_12_6)
    sweep(app, db, at(end - timedelta(days=5), 10))
    [(subject, body)] = [x for x in letters(smtp) if "Автоплатёж" in x[0]]
    assert "5 940,00 ₽" in subject
    assert f"{(end - timedelta(days=3)).strftime('%d.%m.%Y')}" in subject  # when
    assert "Карта •• 1111" in body and "/payments#autopay" in body  # with what, and how to cancel

    tick(app, db, at(end - timedelta(days=4)))
    assert sandbox_charges(db) == 0  # not before its day

    done = tick(app, db, at(end - timedelta(days=3)))
    assert any("списано 5 940,00" in line.replace("\xa0", " ") for line in done), done
    renewal = renewal_of(db, owner.id)
    assert (renewal.status, renewal.charged, renewal.from_balance, renewal.attempts) == ("succeeded", PRICE_12_6, 0, 1)
    order = db.get(Order, renewal.order_id)
    assert (order.status, order.starts_on, order.kind, order.amount) == ("paid", end, "renewal", PRICE_12_6)
    # The same ledger path as any card payment: one receipt, allocated to the order.
    receipts = db.scalars(sa.select(Receipt).where(Receipt.account_id == owner.id).order_by(Receipt.id)).all()
    assert [r.amount for r in receipts] == [PRICE_12_6, PRICE_12_6]
    assert ledger.order_allocated(db, order.id) == PRICE_12_6 and ledger.account_balance(db, owner.id) == 0
    state = get_subscription_state(db, owner.id, at(end + timedelta(days=1)))
    assert state.is_paid and state.period_start == end

    # Run again (and again the next day): nothing more is charged or sent.
    tick(app, db, at(end - timedelta(days=3), 10))
    tick(app, db, at(end - timedelta(days=2)))
    assert sandbox_charges(db) == 1
    sweep(app, db, at(end - timedelta(days=3), 11))
    sweep(app, db, at(end - timedelta(days=3), 12))
    assert notice_keys(db, owner.id) == [f"autopay-upcoming:{renewal.id}", f"autopay-paid:{renewal.id}"]
    paid = [b for s, b in letters(smtp) if "продлён автоплатежом" in s]
    assert len(paid) == 1 and "с карты (Карта •• 1111) списано 5 940,00 ₽" in paid[0]


def test_a_declining_card_is_retried_on_days_1_3_5_then_grace_then_free(app, client, db, owner, deliveries, smtp):
    end = _autopaid(db, client, owner, "4000 0000 0000 0341")  # pays at checkout, declines when saved
    tick(app, db, at(end - timedelta(days=5)))
    first = end - timedelta(days=3)
    expected_next = [first + timedelta(days=1), first + timedelta(days=3), first + timedelta(days=5), None]
    for day, next_on in zip([0, 1, 3, 5], expected_next, strict=True):
        moment = at(first + timedelta(days=day), 0) + timedelta(minutes=1)
        tick(app, db, moment)
        renewal = renewal_of(db, owner.id)
        assert renewal.attempts == [0, 1, 3, 5].index(day) + 1
        assert renewal.next_attempt_on == next_on
        assert renewal.last_reason == "insufficient_funds"
        sweep(app, db, moment + timedelta(minutes=5))
        if day == 3:  # the period ended today: the plan is kept while retries run
            state = get_subscription_state(db, owner.id, moment)
            assert state.is_grace and state.plan.code == "users-12"
        tick(app, db, moment + timedelta(hours=3))  # a tick the same day changes nothing
    assert renewal.status == "failed"
    order = db.get(Order, renewal.order_id)
    assert order.status == "canceled"
    assert sandbox_charges(db) == 4
    assert db.scalar(sa.select(sa.func.count()).select_from(Receipt).where(Receipt.account_id == owner.id)) == 1
    failed = [b for s, b in letters(smtp) if s.startswith("Автоплатёж не прошёл")]
    assert len(failed) == 4
    # The autopayment's own letters, not a second generic «Платёж … не прошёл» for each declined charge.
    assert not [s for s, _ in letters(smtp) if s.startswith("Платёж ") and "не прошёл" in s]
    assert "Недостаточно средств" in failed[0]
    assert "Следующая попытка — " in failed[0] and "/checkout?plan=users-12&months=6" in failed[0]
    assert "Попыток больше не будет" in failed[3] and "/checkout?plan=users-12&months=6" in failed[3]
    grace = db.scalars(
        sa.select(AuditLog.reason).where(AuditLog.account_id == owner.id, AuditLog.action == "billing.grace_started")
    ).all()
    assert grace == ["Автоплатёж не прошёл, повторные попытки продолжаются."]

    # Grace runs its days (GRACE_DAYS = 7 from the end), then the fall back to free as always.
    assert get_subscription_state(db, owner.id, at(end + timedelta(days=6))).is_grace
    tick(app, db, at(end + timedelta(days=7), 0))
    state = get_subscription_state(db, owner.id, at(end + timedelta(days=7), 0))
    assert (state.status, state.plan.code) == ("free", "users-5")
    assert sandbox_charges(db) == 4


def test_cancelling_between_the_notice_and_the_charge_charges_nothing(
    app, client, db, owner, autopaid, smtp, monkeypatch
):
    end = autopaid
    tick(app, db, at(end - timedelta(days=5)))
    sweep(app, db, at(end - timedelta(days=5), 10))
    import portal.payments.views

    monkeypatch.setattr(portal.payments.views, "utcnow", lambda: at(end - timedelta(days=4)))
    page = client.get("/payments").get_data(as_text=True)
    assert "следующее списание" in page and "Ничего не будет списано" in page  # the confirm says the consequence
    resp = post(client, "/payments/autopay/cancel")
    assert resp.status_code == 302
    assert "Автоплатёж отключён" in client.get(resp.headers["Location"]).get_data(as_text=True)

    tick(app, db, at(end - timedelta(days=3)))
    tick(app, db, at(end - timedelta(days=1)))
    assert sandbox_charges(db) == 0
    renewal = renewal_of(db, owner.id)
    assert renewal.status == "canceled" and renewal.order_id is None
    consent = db.scalars(sa.select(AutopayConsent).where(AutopayConsent.account_id == owner.id)).one()
    assert consent.status == "canceled" and consent.canceled_by_user_id is not None
    assert "autopay.consent_canceled" in audit_actions(db, owner.id)
    sweep(app, db, at(end - timedelta(days=4), 10))
    assert notice_keys(db, owner.id) == [f"autopay-upcoming:{renewal.id}", f"autopay-canceled:{consent.id}"]
    # At the end the plan falls back as it would without autopayment (no grace: nothing is being retried).
    tick(app, db, at(end, 0))
    assert get_subscription_state(db, owner.id, at(end, 1)).is_free


def test_removing_the_card_stops_autopayment_and_the_page_stays_whole(app, client, db, owner, autopaid):
    resp = post(client, "/payments/autopay/method/remove")
    assert resp.status_code == 302
    page = client.get("/payments")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Карта удалена" in text and "Удалить карту" not in text
    assert autopay.get_autopay(db, owner.id) is None
    db.expire_all()
    assert db.scalars(sa.select(SavedMethod)).one().removed_at is not None
    actions = audit_actions(db, owner.id)
    assert "autopay.method_removed" in actions and "autopay.consent_canceled" in actions
    tick(app, db, at(autopaid - timedelta(days=5)))
    assert renewal_of(db, owner.id) is None
    # A second click (another tab) changes nothing and says so.
    resp = post(client, "/payments/autopay/method/remove")
    assert "Сохранённой карты нет" in client.get(resp.headers["Location"]).get_data(as_text=True)


def test_a_renewal_the_balance_covers_makes_no_provider_call(app, db, owner, autopaid):
    end = autopaid
    tick(app, db, at(end - timedelta(days=5)))
    receipt, _ = ledger.record_receipt(
        db,
        account_id=owner.id,
        method="bank",
        amount=PRICE_12_6 + 100_00,
        received_on=end - timedelta(days=4),
        source_key="test:balance",
        reference="п/п № 7",
        now=at(end - timedelta(days=4)),
    )
    db.commit()
    calls_before = db.scalar(sa.select(sa.func.count()).select_from(SandboxPayment))
    tick(app, db, at(end - timedelta(days=3)))
    renewal = renewal_of(db, owner.id)
    assert (renewal.status, renewal.from_balance, renewal.charged) == ("succeeded", PRICE_12_6, 0)
    assert db.get(Order, renewal.order_id).status == "paid"
    assert db.scalar(sa.select(sa.func.count()).select_from(SandboxPayment)) == calls_before
    assert db.scalar(sa.select(sa.func.count()).select_from(Payment).where(Payment.order_id == renewal.order_id)) == 0
    assert ledger.account_balance(db, owner.id) == 100_00


def test_part_from_the_balance_the_rest_from_the_card(app, db, owner, autopaid):
    end = autopaid
    ledger.record_receipt(
        db,
        account_id=owner.id,
        method="bank",
        amount=1000_00,
        received_on=end - timedelta(days=4),
        source_key="test:part",
        reference="п/п № 8",
        now=at(end - timedelta(days=4)),
    )
    db.commit()
    tick(app, db, at(end - timedelta(days=5)))
    tick(app, db, at(end - timedelta(days=3)))
    renewal = renewal_of(db, owner.id)
    assert (renewal.status, renewal.from_balance, renewal.charged) == ("succeeded", 1000_00, PRICE_12_6 - 1000_00)
    [charge] = db.scalars(sa.select(Payment).where(Payment.order_id == renewal.order_id)).all()
    assert charge.amount == PRICE_12_6 - 1000_00 and charge.idempotence_key == f"autopay-{renewal.order_id}-1"
    assert ledger.account_balance(db, owner.id) == 0


def test_settings_refuse_a_notice_not_before_the_charge(tmp_path):
    from portal import create_app
    from portal.config import ConfigError

    with pytest.raises(ConfigError, match="AUTOPAY_NOTICE_DAYS_BEFORE must be more"):
        create_app({"AUTOPAY_NOTICE_DAYS_BEFORE": 3, "AUTOPAY_CHARGE_DAYS_BEFORE": 3, "TESTING": True})
    with pytest.raises(ConfigError, match="AUTOPAY_RETRY_DAYS"):
        create_app({"AUTOPAY_RETRY_DAYS": "1,3", "TESTING": True})


# --- PostgreSQL: two workers --------------------------------------------------------------------------------


def test_two_workers_ticking_at_once_charge_once_and_send_each_notice_once(pg_url, app, db, owner, autopaid):
    end = autopaid
    maker = app.extensions["portal.db"].sessionmaker
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(moment: datetime) -> None:
        try:
            with app.app_context(), maker() as session:
                barrier.wait(timeout=10)
                billing_tick(session, moment, grace_days=7)
                run_sweep(session, moment + timedelta(minutes=1))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for moment in (at(end - timedelta(days=5)), at(end - timedelta(days=3))):
        threads = [threading.Thread(target=worker, args=(moment,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        barrier.reset()
    assert errors == []
    renewal = renewal_of(db, owner.id)
    assert renewal.status == "succeeded"
    assert sandbox_charges(db) == 1
    assert db.scalar(sa.select(sa.func.count()).select_from(Payment).where(Payment.order_id == renewal.order_id)) == 1
    assert notice_keys(db, owner.id) == [f"autopay-upcoming:{renewal.id}", f"autopay-paid:{renewal.id}"]
    assert db.scalar(sa.select(sa.func.count()).select_from(Receipt).where(Receipt.account_id == owner.id)) == 2


def test_a_charge_the_provider_did_not_answer_is_repeated_with_the_same_key(app, db, owner, autopaid, monkeypatch):
    from portal.payments.providers import get_provider
    from portal.payments.providers.base import ProviderUnavailable

    end = autopaid
    tick(app, db, at(end - timedelta(days=5)))
    sandbox = get_provider(app, "sandbox")
    real = sandbox.charge_saved
    calls: list[str] = []

    def once_unavailable(order, method_id, key, customer):
        calls.append(key)
        if len(calls) == 1:
            raise ProviderUnavailable("нет ответа")
        return real(order, method_id, key, customer)

    monkeypatch.setattr(sandbox, "charge_saved", once_unavailable)
    charge_at = at(end - timedelta(days=3))
    tick(app, db, charge_at)
    renewal = renewal_of(db, owner.id)
    assert (renewal.status, renewal.attempts) == ("charging", 1)
    tick(app, db, charge_at + timedelta(minutes=5))  # the payments re-check leaves the autopay attempt alone
    assert len(calls) == 1 and sandbox_charges(db) == 0
    tick(app, db, charge_at + timedelta(minutes=15))  # the claim went stale: the same attempt, the same key
    renewal = renewal_of(db, owner.id)
    assert (renewal.status, renewal.attempts) == ("succeeded", 1)
    assert calls == [f"autopay-{renewal.order_id}-1"] * 2
    assert sandbox_charges(db) == 1


def test_whoever_switched_autopay_letters_off_gets_none(app, client, db, owner, autopaid):
    from portal.notices import service as notices

    page = client.get("/notifications").get_data(as_text=True)
    assert "Автоплатёж: предупреждение о списании" in page
    membership = db.scalars(
        sa.select(Membership).where(Membership.account_id == owner.id, Membership.role == Role.OWNER.value)
    ).one()
    notices.set_choices(db, owner.id, membership.user_id, {"autopay": False}, at(autopaid - timedelta(days=6)))
    db.commit()
    tick(app, db, at(autopaid - timedelta(days=5)))
    sweep(app, db, at(autopaid - timedelta(days=5), 10))
    assert renewal_of(db, owner.id).status == "noticed"
    assert notice_keys(db, owner.id) == []


def test_paid_another_way_between_retries_the_next_attempt_charges_nothing(app, client, db, owner, deliveries):
    end = _autopaid(db, client, owner, "4000 0000 0000 0341")
    tick(app, db, at(end - timedelta(days=5)))
    tick(app, db, at(end - timedelta(days=3)))
    renewal = renewal_of(db, owner.id)
    assert renewal.status == "failing"
    # The letter's link: the checkout, paid with another card (a renewal from the same end).
    resp = checkout_with_autopay(client, tick_box=False)
    pay_with_card(client, resp.headers["Location"], "4111 1111 1111 1111")
    tick(app, db, at(end - timedelta(days=2)))
    renewal = renewal_of(db, owner.id)
    assert (renewal.status, renewal.last_reason) == ("skipped", "renewed")
    assert db.get(Order, renewal.order_id).status == "canceled"
    assert sandbox_charges(db) == 1
    assert ledger.account_balance(db, owner.id) == 0


def test_a_change_scheduled_for_the_periods_end_is_not_renewed_over(app, client, db, owner, deliveries):
    """A smaller plan scheduled unpaid for the day the period ends follows it: autopayment renews nothing (the same
    days would be sold twice), before and after the tick opens the scheduled order's payment."""
    end = _autopaid(db, client, owner, "4111 1111 1111 1111", plan="users-24")
    order = create_order(
        db,
        actor=None,
        account_id=owner.id,
        plan_code="users-12",
        months=12,
        payer_type="invoice",
        license_version="2026-01",
        idempotency_key="scheduled-after-autopay",
        now=at(end - timedelta(days=60)),
        defer_days=14,
    )
    db.commit()
    assert (order.status, order.starts_on) == ("scheduled", end)
    for days_before in (5, 4, 3, 2):
        tick(app, db, at(end - timedelta(days=days_before)))
    assert renewal_of(db, owner.id) is None and sandbox_charges(db) == 0
    assert db.get(Order, order.id).status == "pending"  # opened by the tick, paid another way


def test_autopayment_agreed_at_an_sbp_checkout_binds_the_bank_account_and_renews_by_it(
    app, client, db, owner, deliveries
):
    """«At card or СБП checkout»: the СБП payment is created with save_payment_method, the bank app says the account
    will be bound, and the renewal is charged by that binding like a saved card."""
    from tests.payments.test_sbp import bank_app_url, press

    page = client.get("/checkout?plan=users-12&months=6").get_data(as_text=True)
    assert "картой или по СБП" in page
    data = form_fields(page)
    data.update(payer_type="sbp", accept_license="y", autopay="y")
    resp = client.post("/checkout", data=data)
    assert resp.status_code == 302
    url = bank_app_url(client.get(resp.headers["Location"]).get_data(as_text=True))
    assert "Счёт будет привязан для автоплатежа" in client.get(urllib.parse.urlsplit(url).path).get_data(as_text=True)
    press(client, url, "pay")
    db.expire_all()
    consent = db.scalars(sa.select(AutopayConsent).where(AutopayConsent.account_id == owner.id)).one()
    method = db.get(SavedMethod, consent.method_id)
    assert (consent.status, method.title) == ("active", "Счёт в банке через СБП")
    assert "СБП" in consent.terms_text

    end = db.scalars(sa.select(SubscriptionPeriod).where(SubscriptionPeriod.account_id == owner.id)).one().ends_on
    tick(app, db, at(end - timedelta(days=5)))
    tick(app, db, at(end - timedelta(days=3)))
    renewal = renewal_of(db, owner.id)
    assert (renewal.status, renewal.charged) == ("succeeded", PRICE_12_6)
    assert db.get(Order, renewal.order_id).status == "paid"


def test_in_grace_while_autopayment_retries_the_dashboard_names_the_next_attempt(
    app, client, db, owner, deliveries, monkeypatch
):
    end = _autopaid(db, client, owner, "4000 0000 0000 0341")  # declines once saved
    first = end - timedelta(days=3)
    tick(app, db, at(end - timedelta(days=5)))
    for day in (0, 1):
        tick(app, db, at(first + timedelta(days=day), 0) + timedelta(minutes=1))
    tick(app, db, at(end, 0) + timedelta(minutes=1))  # the period ended unpaid: grace while retries run
    import portal.dashboard

    monkeypatch.setattr(portal.dashboard, "utcnow", lambda: at(end, 10))  # the page's clock
    text = client.get("/").get_data(as_text=True).replace("\xa0", " ")
    # Days 0, 1 and 3 declined (day 3 is the period's end): the next attempt is day 5, and the page says so.
    retry = (first + timedelta(days=5)).strftime("%d.%m.%Y")
    next_ru = format_date_ru(first + timedelta(days=5)).replace("\xa0", " ")
    assert f"автоплатёж не прошёл, следующая попытка {next_ru} — или оплатите другим способом" in text
    assert f"Автоплатёж включён: Карта •• 0341, повторная попытка {retry}" in text
    assert "оплатите счёт" not in text
