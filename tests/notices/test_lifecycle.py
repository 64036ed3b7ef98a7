"""Lifecycle notices at given moments: a declined payment, over the seat or storage limit (once per episode), a
scheduled change taking effect; each once per event, with a plain-text part, by SMS where the person chose it."""

from __future__ import annotations

import io
import re

import sqlalchemy as sa

from portal.accounts.models import Account, Membership, MembershipStatus, Role, User
from portal.accounts.sms import ConsoleSms
from portal.billing.settlement import apply_paid_order
from portal.notices import service as notices
from portal.notices.models import LimitEpisode, Notice
from portal.payments.models import Payment
from tests.billing.terms import msk
from tests.conftest import post
from tests.notices.test_notices import OWNER, buy, letters
from tests.notices.test_notices import company as company  # noqa: F401  (fixtures)
from tests.notices.test_notices import paid_until_sept as paid_until_sept  # noqa: F401
from tests.notices.test_notices import smtp as smtp  # noqa: F401
from tests.notices.test_notices import sweep as sweep  # noqa: F401

GB = 1024**3


def declined(db, order, now, reason="insufficient_funds", method="bank_card", n=1) -> Payment:
    """An attempt the provider declined at `now`, as payments.service records it."""
    payment = Payment(
        provider="sandbox",
        provider_payment_id=f"sbx_test_{order.id}_{n}",
        idempotence_key=f"k-{order.id}-{n}",
        order_id=order.id,
        account_id=order.account_id,
        amount=order.amount,
        status="canceled",
        status_reason=reason,
        method=method,
        created_at=now,
        updated_at=now,
    )
    db.add(payment)
    db.commit()
    return payment


def choose_sms(db, account, phone, *topics):
    user_id = db.scalars(
        sa.select(Membership.user_id)
        .join(Membership.user)
        .where(Membership.account_id == account.id, User.phone == phone)
    ).one()
    notices.set_channels(db, account.id, user_id, {t: "sms" for t in topics}, msk(2026, 1, 1))
    db.commit()


# --- a declined payment ---------------------------------------------------------------------------------------


def test_a_declined_payment_is_told_once_per_attempt_with_the_reason_and_a_link(db, smtp, sweep, company):
    order = buy(db, company, "users-12", 6, msk(2026, 5, 5, 10))
    declined(db, order, msk(2026, 5, 5, 10, 1))
    sweep(msk(2026, 5, 5, 10, 5))
    sweep(msk(2026, 5, 5, 10, 15))  # the same attempt again: nothing
    declined(db, order, msk(2026, 5, 5, 11), reason="3d_secure_failed", method="sbp", n=2)
    sweep(msk(2026, 5, 5, 11, 5))
    got = letters(smtp)
    assert [to for to, _s, _t in got] == ["owner@romashka.example.ru"] * 2  # the owner's topic
    (_to, subject, text), (_to2, subject2, text2) = got
    assert subject == "Платёж 5 940,00 ₽ не прошёл"
    assert f"Оплата картой 5 940,00 ₽ по заказу № {order.id}" in text
    assert "Недостаточно средств" in text and "Деньги не списаны, тариф не изменился." in text
    assert "http://localhost/checkout?plan=users-12&months=6" in text
    assert "Оплата по СБП" in text2 and "3-D Secure" in text2


def test_a_payer_who_stopped_or_paid_another_way_gets_no_failure_notice(db, smtp, sweep, company):
    order = buy(db, company, "users-12", 6, msk(2026, 5, 5, 10))
    declined(db, order, msk(2026, 5, 5, 10, 1), reason="payer_canceled")
    declined(db, order, msk(2026, 5, 5, 10, 2), reason="expired_on_confirmation", n=2)
    other = buy(db, company, "users-24", 6, msk(2026, 5, 5, 10, 30))
    declined(db, other, msk(2026, 5, 5, 10, 31), n=3)
    assert apply_paid_order(db, other.id, now=msk(2026, 5, 5, 10, 40), reference="test")
    db.commit()
    sweep(msk(2026, 5, 5, 10, 45))
    assert [s for _to, s, _t in letters(smtp) if "не прошёл" in s] == []


def test_a_failure_goes_by_sms_to_whoever_chose_it_and_not_by_email(app, db, smtp, sweep, company):
    out = io.StringIO()
    app.config["SMS_BACKEND_OBJECT"] = ConsoleSms(stream=out)  # the local default, as a developer reads it
    choose_sms(db, company, OWNER, notices.TOPIC_FAILED)
    order = buy(db, company, "users-12", 6, msk(2026, 5, 5, 10))
    declined(db, order, msk(2026, 5, 5, 10, 1))
    sweep(msk(2026, 5, 5, 10, 5))
    sweep(msk(2026, 5, 5, 10, 15))
    assert [s for _to, s, _t in letters(smtp) if "не прошёл" in s] == []
    [line] = out.getvalue().splitlines()
    assert line.startswith(f"SMS to {OWNER}: Платёж 5 940,00 ₽ (Банковская карта) не прошёл")
    assert "http://localhost/checkout?plan=users-12&months=6" in line
    assert len(line) < 200  # a short text, not the letter
    notice = db.scalars(sa.select(Notice)).one()
    assert (notice.channel, notice.email, notice.topic) == ("sms", OWNER, "failed")


# --- over the limits --------------------------------------------------------------------------------------------


def set_active(db, account, n_members: int) -> None:
    """Keep the owner, the accountant and the first `n_members` members active; deactivate the rest."""
    members = db.scalars(
        sa.select(Membership)
        .where(Membership.account_id == account.id, Membership.role == Role.MEMBER.value)
        .order_by(Membership.id)
    ).all()
    for i, m in enumerate(members):
        m.status = MembershipStatus.ACTIVE.value if i < n_members else MembershipStatus.DEACTIVATED.value
    db.commit()


def test_over_the_seat_limit_is_told_once_per_episode(db, smtp, sweep, company, add_member):
    for i in range(5):
        add_member(company, f"+7916444000{i}")
    # 2 + 5 = 7 active on the free plan's 5
    sweep(msk(2026, 5, 5, 10))
    sweep(msk(2026, 5, 5, 11))  # still over: the same episode
    set_active(db, company, 4)  # 6: still over
    sweep(msk(2026, 5, 5, 12))
    set_active(db, company, 3)  # 5: within
    sweep(msk(2026, 5, 5, 13))
    set_active(db, company, 5)  # over again: a new episode
    sweep(msk(2026, 5, 6, 10))
    got = [x for x in letters(smtp) if x[1].startswith("Тариф превышен")]
    assert [(to, s) for to, s, _t in got] == [
        ("owner@romashka.example.ru", "Тариф превышен: 7 из 5 пользователей"),
        ("owner@romashka.example.ru", "Тариф превышен: 7 из 5 пользователей"),
    ]
    text = got[0][2]
    assert "В компании 7 пользователей, а тариф «5 пользователей» рассчитан на 5 пользователей." in text
    assert "http://localhost/plans" in text and "http://localhost/team" in text
    episodes = db.scalars(sa.select(LimitEpisode).order_by(LimitEpisode.number)).all()
    assert [(e.kind, e.number, e.ended_at is None) for e in episodes] == [("seats", 1, False), ("seats", 2, True)]


def test_a_plan_that_fits_ends_the_episode_without_a_letter(db, smtp, sweep, company, add_member):
    for i in range(5):
        add_member(company, f"+7916555000{i}")
    sweep(msk(2026, 5, 5, 10))
    order = buy(db, company, "users-12", 6, msk(2026, 5, 5, 11))
    assert apply_paid_order(db, order.id, now=msk(2026, 5, 5, 11), reference="test")
    db.commit()
    sweep(msk(2026, 5, 5, 12))
    assert len([x for x in letters(smtp) if x[1].startswith("Тариф превышен")]) == 1
    assert db.scalars(sa.select(LimitEpisode)).one().ended_at is not None


def test_storage_over_quota_is_told_once(db, smtp, sweep, company):
    account = db.get(Account, company.id)
    account.storage_used_bytes = 3 * GB
    db.commit()
    sweep(msk(2026, 5, 5, 10))
    sweep(msk(2026, 5, 5, 11))
    [(to, subject, text)] = [x for x in letters(smtp) if x[1].startswith("Хранилище")]
    assert subject == "Хранилище переполнено: 3 ГБ из 2 ГБ"
    assert "Файлы компании занимают 3 ГБ, а в тарифе «5 пользователей» — 2 ГБ." in text


def test_a_person_who_switched_the_limits_topic_off_gets_nothing(db, smtp, sweep, company, add_member):
    owner_id = db.scalars(
        sa.select(Membership.user_id).where(Membership.account_id == company.id, Membership.role == "owner")
    ).one()
    notices.set_choices(db, company.id, owner_id, {notices.TOPIC_LIMITS: False}, msk(2026, 1, 1))
    db.commit()
    for i in range(5):
        add_member(company, f"+7916666000{i}")
    sweep(msk(2026, 5, 5, 10))
    assert letters(smtp) == []


# --- a scheduled change ---------------------------------------------------------------------------------------


def test_a_downgrade_is_told_when_it_takes_effect(db, smtp, sweep, company):
    big = buy(db, company, "users-24", 6, msk(2026, 3, 10))
    assert apply_paid_order(db, big.id, now=msk(2026, 3, 10), reference="big")
    small = buy(db, company, "users-12", 6, msk(2026, 6, 1))
    assert apply_paid_order(db, small.id, now=msk(2026, 6, 1), reference="small")
    db.commit()
    assert small.starts_on.isoformat() == "2026-09-10"
    assert [s for _to, s, _t in letters(smtp) if "вступил" in s] == []
    sweep(msk(2026, 9, 9, 23, 50))  # the day before: nothing yet
    assert [s for _to, s, _t in letters(smtp) if "вступил" in s] == []
    sweep(msk(2026, 9, 10, 0, 5))
    sweep(msk(2026, 9, 10, 0, 15))
    got = [x for x in letters(smtp) if "вступил" in x[1]]
    assert [(to, s) for to, s, _t in got] == [
        ("owner@romashka.example.ru", "Тариф «12 пользователей» вступил в силу 10 сентября 2026 г.")
    ]
    assert "вместо «24 пользователя»" in got[0][2] and "по 9 марта 2027 г. включительно" in got[0][2]


# --- choosing SMS on /notifications ---------------------------------------------------------------------------


def test_the_owner_chooses_sms_for_reminders_and_gets_them_so(db, client, auth, sms, smtp, sweep, paid_until_sept):
    auth.login(OWNER)
    page = client.get("/notifications").get_data(as_text=True)
    assert "SMS на телефон входа" in page and "+7 916 333-00-00" in page
    assert page.count('value="sms"') == 2  # the reminders and the failed payments
    resp = post(client, "/notifications", {"renewal": "y", "renewal_channel": "sms", "failed": "y"})
    assert resp.status_code == 302
    page = client.get("/notifications").get_data(as_text=True)
    assert re.search(r'<input[^>]*checked[^>]*name="renewal_channel"[^>]*value="sms"', page)
    sms.messages.clear()
    sweep(msk(2026, 8, 27, 9))
    assert letters(smtp) == []
    [(phone, text)] = sms.messages
    assert phone == OWNER
    assert text.startswith("Оплаченный период тарифа «12 пользователей» заканчивается 09.09.")
    assert "http://localhost/checkout?plan=users-12&months=6" in text


def test_a_forged_channel_is_refused_and_changes_nothing(db, client, auth, company):
    auth.login(OWNER)
    resp = post(client, "/notifications", {"renewal": "y", "renewal_channel": "pigeon"})
    assert resp.status_code == 400
    assert "Выберите, как присылать: письмом или SMS." in resp.get_data(as_text=True)
    owner_id = db.scalars(
        sa.select(Membership.user_id).where(Membership.account_id == company.id, Membership.role == "owner")
    ).one()
    assert notices.get_channels(db, company.id, owner_id) == {"renewal": "email", "failed": "email"}


# --- two workers at once (PostgreSQL) -----------------------------------------------------------------------------


def test_concurrent_sweeps_send_each_lifecycle_notice_once(pg_url, app, db, smtp, company, add_member):
    from portal.notices.tasks import run_sweep
    from tests.billing.test_concurrency_pg import _run_together

    for i in range(5):
        add_member(company, f"+7916777000{i}")
    account = db.get(Account, company.id)
    account.storage_used_bytes = 3 * GB
    db.commit()
    declined(db, buy(db, company, "users-12", 6, msk(2026, 5, 5, 10)), msk(2026, 5, 5, 10, 1))
    maker = app.extensions["portal.db"].sessionmaker

    def run(i):
        with app.app_context(), maker() as session:
            return run_sweep(session, msk(2026, 5, 5, 10, 5))

    _run_together(4, run)
    subjects = sorted(s for _to, s, _t in letters(smtp))
    assert subjects == [
        "Платёж 5 940,00 ₽ не прошёл",
        "Тариф превышен: 7 из 5 пользователей",
        "Хранилище переполнено: 3 ГБ из 2 ГБ",
    ]
    assert db.scalar(sa.select(sa.func.count()).select_from(LimitEpisode)) == 2
