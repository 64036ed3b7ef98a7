"""Reminders and lifecycle notices over a real SMTP dialogue: each sent once, and never to whoever unsubscribed."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from portal.accounts.models import Membership, Role
from portal.billing.orders import create_order
from portal.billing.settlement import apply_paid_order
from portal.billing.tick import tick
from portal.billing.trial import start_trial
from portal.notices.models import Notice
from portal.notices.tasks import run_sweep
from portal.payments import ledger
from tests.billing.terms import msk
from tests.conftest import post
from tests.support.smtp_fake import FakeSmtpState, fake_smtp_server

OWNER = "+79163330000"
ACCOUNTANT = "+79163330001"


@pytest.fixture
def smtp(app: Any) -> Iterator[FakeSmtpState]:
    """The app sends through SMTP to a real server on loopback (the backend reads the settings on each send)."""
    with fake_smtp_server() as (host, port, state):
        app.config.update(EMAIL_BACKEND="smtp", SMTP_HOST=host, SMTP_PORT=port)
        yield state


@pytest.fixture
def sweep(app, db):
    def run(now):
        with app.app_context():
            return run_sweep(db, now)

    return run


@pytest.fixture
def company(db, make_account):
    account = make_account(owner_phone=OWNER, accountant_phone=ACCOUNTANT)
    for m in db.scalars(sa.select(Membership).where(Membership.account_id == account.id)):
        m.email = "owner@romashka.example.ru" if m.role == Role.OWNER.value else "buh@romashka.example.ru"
    db.commit()
    return account


def buy(db, account, plan, months, now, payer_type="card"):
    order = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code=plan,
        months=months,
        payer_type=payer_type,
        license_version="2026-01",
        idempotency_key=f"notice-test-{account.id}-{now.timestamp():.0f}",
        now=now,
    )
    db.commit()
    return order


def letters(state: FakeSmtpState) -> list[tuple[str, str, str]]:
    """(to, subject, plain text) of every letter the SMTP server received."""
    out = []
    for got in state.messages:
        msg = email.message_from_bytes(got.data, policy=email.policy.default)
        text = msg.get_body(("plain",)).get_content()
        # Amounts keep their no-break spaces (so «12 345,00 ₽» never wraps); read them as a person would.
        out.append((str(msg["To"]), str(msg["Subject"]).replace("\xa0", " "), text.replace("\xa0", " ")))
    return out


@pytest.fixture
def paid_until_sept(db, company):
    """users-12 for 10.03.2026–09.09.2026 (the next day is the first without it)."""
    order = buy(db, company, "users-12", 6, msk(2026, 3, 10))
    assert apply_paid_order(db, order.id, now=msk(2026, 3, 10), reference="test")
    db.commit()
    return company


def test_reminders_14_3_and_1_days_before_the_end_each_once_with_the_price_and_a_link(db, smtp, sweep, paid_until_sept):
    assert sweep(msk(2026, 8, 26, 9)) == []  # 15 days left: too early
    sent = sweep(msk(2026, 8, 27, 9))
    assert len(sent) == 1
    assert sweep(msk(2026, 8, 27, 9, 10)) == []  # the same sweep again
    assert sweep(msk(2026, 8, 28, 9)) == []  # 13 days: the 14-day mark is already told
    sweep(msk(2026, 9, 7, 9))
    sweep(msk(2026, 9, 7, 9, 10))
    sweep(msk(2026, 9, 9, 9))
    got = letters(smtp)
    assert [to for to, _s, _t in got] == ["owner@romashka.example.ru"] * 3  # the accountant gets no renewal letters
    to, subject, text = got[0]
    assert subject == "Оплаченный период тарифа «12 пользователей» заканчивается 9 сентября 2026 г."
    assert "осталось дней: 14" in text
    assert "Тариф «12 пользователей»: 5 940,00 ₽ — продление на 6 месяцев, с 10.09.2026 по 09.03.2027." in text
    assert "http://localhost/checkout?plan=users-12&months=6" in text
    assert "осталось дней: 3" in got[1][2] and "осталось дней: 1" in got[2][2]


def test_no_reminder_once_the_renewal_is_paid(db, smtp, sweep, paid_until_sept):
    renewal = buy(db, paid_until_sept, "users-12", 6, msk(2026, 8, 20))
    assert apply_paid_order(db, renewal.id, now=msk(2026, 8, 20), reference="test-2")
    db.commit()
    assert sweep(msk(2026, 8, 27, 9)) == [] and sweep(msk(2026, 9, 9, 9)) == []


def test_the_end_and_the_grace_are_told_once(db, smtp, sweep, paid_until_sept):
    buy(db, paid_until_sept, "users-12", 6, msk(2026, 9, 5), payer_type="invoice")
    sweep(msk(2026, 9, 9, 9))  # the 1-day reminder
    tick(db, msk(2026, 9, 10, 0, 1))
    sweep(msk(2026, 9, 10, 0, 2))
    sweep(msk(2026, 9, 10, 0, 12))
    ended = [x for x in letters(smtp) if "закончился" in x[1]]
    assert len(ended) == 1
    assert ended[0][1] == "Оплаченный период закончился: тариф «12 пользователей» сохраняется до 16 сентября 2026 г."
    assert "оплатите счёт" in ended[0][2]


def test_a_trial_end_is_told_too(db, smtp, sweep, company):
    start_trial(db, actor=None, account_id=company.id, plan_code="users-24", now=msk(2026, 3, 10))
    db.commit()
    sweep(msk(2026, 4, 7, 9))
    [(to, subject, text)] = letters(smtp)
    assert subject == "Пробный период тарифа «24 пользователя» заканчивается 9 апреля 2026 г."
    assert "months=12" in text


def test_a_payment_is_told_to_the_owner_and_the_accountant_once(db, smtp, sweep, company):
    ledger.record_receipt(
        db,
        account_id=company.id,
        method="bank",
        amount=1_234_500,
        received_on=msk(2026, 5, 5).date(),
        source_key="bank:test-1",
        reference="п/п № 512 от 05.05.2026",
        now=msk(2026, 5, 5, 10),
    )
    db.commit()
    sweep(msk(2026, 5, 5, 10, 5))
    sweep(msk(2026, 5, 5, 10, 15))
    got = letters(smtp)
    assert sorted(to for to, _s, _t in got) == ["buh@romashka.example.ru", "owner@romashka.example.ru"]
    assert {s for _to, s, _t in got} == {"Получен платёж 12 345,00 ₽"}
    assert "п/п № 512 от 05.05.2026" in got[0][2]


def test_an_invoice_about_to_expire_is_told_once_within_its_last_day(db, smtp, sweep, company):
    order = buy(db, company, "users-12", 6, msk(2026, 5, 5, 10), payer_type="invoice")  # valid 10 days here
    assert sweep(msk(2026, 5, 14, 9)) == []
    sweep(msk(2026, 5, 14, 10, 30))
    sweep(msk(2026, 5, 15, 9))
    got = letters(smtp)
    assert len(got) == 2  # owner and accountant
    assert got[0][1] == f"Срок оплаты счёта по заказу № {order.id} истекает"


def test_an_unsubscribed_person_gets_nothing_and_the_link_works_without_signing_in(
    db, client, smtp, sweep, paid_until_sept
):
    sweep(msk(2026, 8, 27, 9))
    [(_to, _s, text)] = letters(smtp)
    link = re.search(r"http://localhost(/notifications/unsubscribe/\S+)", text).group(1)
    page = client.get(link)
    assert page.status_code == 200 and "Отписаться" in page.get_data(as_text=True)
    assert client.get(link).status_code == 200  # a GET (a mail scanner's preview) changes nothing
    assert sweep(msk(2026, 9, 7, 9)) != []
    done = post(client, link, {}, base_url="http://localhost")
    assert done.status_code == 200
    assert "больше не придут" in done.get_data(as_text=True)
    assert sweep(msk(2026, 9, 9, 9)) == []
    assert len(letters(smtp)) == 2


def test_a_forged_unsubscribe_link_is_refused(client, company):
    assert client.get("/notifications/unsubscribe/eyJhIjoxfQ.forged").status_code == 404


def test_the_notifications_page_saves_each_persons_choice(db, client, auth, smtp, sweep, company):
    auth.login(ACCOUNTANT)
    page = client.get("/notifications").get_data(as_text=True)
    assert "Поступившие платежи" in page and "buh@romashka.example.ru" in page
    assert "Напоминания об окончании" not in page  # renewal reminders are the owner's
    resp = post(client, "/notifications", {"invoices": "y"})
    assert resp.status_code == 302
    ledger.record_receipt(
        db,
        account_id=company.id,
        method="bank",
        amount=100_00,
        received_on=msk(2026, 5, 5).date(),
        source_key="bank:test-2",
        reference="п/п № 7",
        now=msk(2026, 5, 5, 10),
    )
    db.commit()
    sweep(msk(2026, 5, 5, 10, 5))
    assert [to for to, _s, _t in letters(smtp)] == ["owner@romashka.example.ru"]
    keys = db.scalars(sa.select(Notice.key)).all()
    assert len(keys) == 1


def test_a_member_has_no_notifications_page(client, auth, make_account, add_member):
    account = make_account(owner_phone=OWNER)
    add_member(account, "+79163339999")
    auth.login("+79163339999")
    assert client.get("/notifications").status_code == 403
