"""Owners ask support for a free month or a plan over 1000 users, and see the answer on their dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from portal.accounts.models import Role, User
from portal.billing.trial import start_trial
from portal.support import requests as service
from portal.support.models import SupportRequest
from tests.conftest import post

OWNER = "+79161110000"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def company(make_account):
    return make_account(name="ООО «Ромашка»", owner_phone=OWNER, members=2)


def requests_of(db, account_id: int) -> list[SupportRequest]:
    db.expire_all()
    return list(db.scalars(sa.select(SupportRequest).where(SupportRequest.account_id == account_id)))


def test_owner_asks_for_a_trial_month(client, auth, db, company, mailbox, audit):
    auth.login(OWNER)
    page = client.get("/support-requests/new?kind=trial")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Попробовать бесплатно месяц" in text and 'value="users-50"' in text and 'value="users-5"' not in text

    resp = post(client, "/support-requests/new?kind=trial", {"plan_code": "users-50", "comment": "Хотим проверить"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/")
    [row] = requests_of(db, company.id)
    assert (row.kind, row.plan_code, row.status, row.comment) == ("trial", "users-50", "open", "Хотим проверить")
    [record] = audit(db, "support.request_created", company.id)
    assert record.after["plan"] == "users-50" and record.actor_label.endswith(f"({OWNER})")
    # Support hears about it by e-mail.
    assert [m["To"] for m in mailbox.sent] == ["support@example.ru"]
    assert "Пробный месяц" in mailbox.sent[0]["Subject"]


def test_one_open_trial_request_at_a_time(client, auth, db, company):
    auth.login(OWNER)
    assert post(client, "/support-requests/new?kind=trial", {"plan_code": "users-24"}).status_code == 302
    again = post(client, "/support-requests/new?kind=trial", {"plan_code": "users-50"})
    assert again.status_code == 409
    assert "Заявка на пробный месяц уже отправлена" in again.get_data(as_text=True)
    assert len(requests_of(db, company.id)) == 1


def test_open_trial_request_is_unique_in_the_database_too(db, company):
    """Two requests racing past the check still cannot both be open: the partial unique index refuses."""
    from sqlalchemy.exc import IntegrityError

    for _ in range(2):
        db.add(SupportRequest(account_id=company.id, kind="trial", plan_code="users-12", status="open", created_at=NOW))
    with pytest.raises(IntegrityError):
        db.commit()
    db.rollback()
    # A closed one does not count: a new request may follow a rejected one.
    db.add(SupportRequest(account_id=company.id, kind="trial", plan_code="users-12", status="rejected", created_at=NOW))
    db.add(SupportRequest(account_id=company.id, kind="trial", plan_code="users-12", status="open", created_at=NOW))
    db.commit()


def test_trial_already_used_is_said_instead_of_creating_a_request(client, auth, db, company, staff):
    start_trial(db, actor=staff, account_id=company.id, plan_code="users-12", now=NOW)
    db.commit()
    auth.login(OWNER)
    page = client.get("/support-requests/new?kind=trial").get_data(as_text=True)
    assert "Пробный месяц уже был использован" in page and 'name="plan_code"' not in page
    resp = post(client, "/support-requests/new?kind=trial", {"plan_code": "users-50"})
    assert resp.status_code == 409 and "уже был использован" in resp.get_data(as_text=True)
    assert requests_of(db, company.id) == []


def test_large_plan_request(client, auth, db, company):
    auth.login(OWNER)
    page = client.get("/support-requests/new").get_data(as_text=True)  # the plans page links here without a kind
    assert "Более 1000 пользователей" in page and 'name="users_expected"' in page
    resp = post(client, "/support-requests/new?kind=large_plan", {"users_expected": "2 500", "comment": "Нужно 10 ТБ"})
    assert resp.status_code == 302
    [row] = requests_of(db, company.id)
    assert (row.kind, row.users_expected, row.comment, row.plan_code) == ("large_plan", 2500, "Нужно 10 ТБ", None)


@pytest.mark.parametrize(
    "users, words",
    [("", "Укажите сколько будет пользователей"), ("800", "обычный тариф"), ("много", "целое число")],
)
def test_large_plan_request_needs_a_number_over_1000(client, auth, db, company, users, words):
    auth.login(OWNER)
    resp = post(client, "/support-requests/new?kind=large_plan", {"users_expected": users})
    assert resp.status_code == 400 and words in resp.get_data(as_text=True)
    assert requests_of(db, company.id) == []


def test_trial_request_needs_a_paid_plan(client, auth, db, company):
    auth.login(OWNER)
    for plan in ("", "users-5", "custom-999-5000"):
        resp = post(client, "/support-requests/new?kind=trial", {"plan_code": plan})
        assert resp.status_code == 400 and "тариф" in resp.get_data(as_text=True)
    assert requests_of(db, company.id) == []


@pytest.mark.parametrize("role", [Role.ACCOUNTANT, Role.MEMBER])
def test_only_the_owner_may_ask(client, auth, db, company, add_member, role):
    add_member(company, "+79162220000", role=role)
    auth.login("+79162220000")
    for kind in ("trial", "large_plan"):
        assert client.get(f"/support-requests/new?kind={kind}").status_code == 403
        assert post(client, f"/support-requests/new?kind={kind}", {"users_expected": "2000"}).status_code == 403
    assert requests_of(db, company.id) == []


def test_visitor_is_sent_to_sign_in(client, company):
    resp = client.get("/support-requests/new?kind=trial")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_owner_sees_the_status_and_the_answer_on_the_dashboard(client, auth, db, company, staff):
    auth.login(OWNER)
    post(client, "/support-requests/new?kind=large_plan", {"users_expected": "1500"})
    home = client.get("/").get_data(as_text=True)
    assert "Заявки в поддержку" in home and "Более 1000 пользователей" in home and "Отправлена" in home

    [row] = requests_of(db, company.id)
    service.resolve_request(db, row.id, actor=staff, status="rejected", note="Позвоните нам, обсудим", now=NOW)
    db.commit()
    home = client.get("/").get_data(as_text=True)
    assert "Отклонена" in home and "Ответ поддержки: Позвоните нам, обсудим" in home


def test_dashboard_offers_the_trial_until_it_is_asked_for(client, auth, db, company):
    auth.login(OWNER)
    assert "Попробовать бесплатно месяц" in client.get("/").get_data(as_text=True)
    post(client, "/support-requests/new?kind=trial", {"plan_code": "users-24"})
    home = client.get("/").get_data(as_text=True)
    assert "Пробный месяц" in home and "«24 пользователя»" in home
    assert "Попробовать бесплатно месяц" not in home


def test_members_do_not_see_the_card(client, auth, db, company, add_member):
    add_member(company, "+79163330000", role=Role.MEMBER)
    auth.login("+79163330000")
    assert "Заявки в поддержку" not in client.get("/").get_data(as_text=True)


# --- issue #14: repeats and the daily limit ----------------------------------------------------------------


def test_a_repeat_of_an_open_request_shows_it_and_mails_no_one(client, auth, db, company, mailbox):
    auth.login(OWNER)
    first = post(client, "/support-requests/new?kind=large_plan", {"users_expected": "1500"})
    assert first.status_code == 302
    [row] = requests_of(db, company.id)
    again = post(client, "/support-requests/new?kind=large_plan", {"users_expected": "2000", "comment": "Ещё раз"})
    assert again.status_code == 409
    assert f"Заявка № {row.id} «Более 1000 пользователей» уже отправлена" in again.get_data(as_text=True)
    assert "Новая не создана" in again.get_data(as_text=True)
    assert len(requests_of(db, company.id)) == 1
    assert len(mailbox.sent) == 1

    # Once support closes it, a new one may follow.
    row.status = "done"
    db.commit()
    assert post(client, "/support-requests/new?kind=large_plan", {"users_expected": "2000"}).status_code == 302
    assert len(requests_of(db, company.id)) == 2


def test_at_most_support_requests_per_day_of_one_account(app, client, auth, db, company, mailbox):
    app.config["SUPPORT_REQUESTS_PER_DAY"] = 2
    auth.login(OWNER)
    for users in ("1500", "1600"):
        assert post(client, "/support-requests/new?kind=large_plan", {"users_expected": users}).status_code == 302
        # Closed at once, so the next one is not a repeat of an open request.
        for row in requests_of(db, company.id):
            row.status = "rejected"
        db.commit()
    resp = post(client, "/support-requests/new?kind=large_plan", {"users_expected": "1700"})
    assert resp.status_code == 429
    html = resp.get_data(as_text=True)
    assert "За сутки компания уже отправила 2 заявки — больше нельзя." in html
    assert "Новую можно будет отправить после" in html
    assert len(requests_of(db, company.id)) == 2
    assert len(mailbox.sent) == 2


def test_the_daily_limit_counts_the_last_24_hours(db, company):
    owner = db.scalars(sa.select(User).where(User.phone == OWNER)).one()
    for hours_ago in (30, 23, 1):
        db.add(
            SupportRequest(
                account_id=company.id,
                kind="large_plan",
                users_expected=1500,
                status="rejected",
                created_at=NOW - timedelta(hours=hours_ago),
            )
        )
    db.commit()
    # Two in the last 24 hours (23 h and 1 h ago); the older frees its place at 10:00 UTC, 13:00 in Moscow.
    with pytest.raises(service.TooManyRequests, match=r"после 25\.11\.2026 13:00"):
        service.create_request(
            db, actor=owner, account_id=company.id, kind="large_plan", users_expected=1500, now=NOW, per_day=2
        )
    db.rollback()
    row = service.create_request(
        db, actor=owner, account_id=company.id, kind="large_plan", users_expected=1500, now=NOW, per_day=3
    )
    assert row.id
