"""The home page: plan, paid/trial dates, usage bars, scheduled changes and the next step that fits."""

from __future__ import annotations

import re
from datetime import date

import pytest

from devtools.demo import seed_demo_data
from portal.accounts.models import Account, Role
from portal.billing.trial import start_trial
from tests.billing.conftest import page_text
from tests.billing.terms import GiB, msk

OWNER = "+79163330000"


def meters(html: str) -> dict[str, dict[str, str]]:
    found = {}
    for m in re.finditer(r"<meter([^>]*)>", html):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', m.group(1)))
        if "usage-meter" in attrs.get("class", ""):
            found[attrs["aria-label"].split(":")[0]] = attrs
    return found


@pytest.fixture
def owner_of(make_account, auth, freeze):
    def factory(members: int = 0, now=None):
        freeze(now or msk(2026, 3, 10, 15))
        account = make_account(owner_phone=OWNER, members=members)
        auth.login(OWNER)
        return account

    return factory


def test_over_the_free_limit_shows_full_red_bar_and_the_fitting_plan(client, owner_of):
    owner_of(members=8)  # 9 active on the free plan of 5
    resp = client.get("/")
    html, text = resp.get_data(as_text=True), page_text(resp)
    seats = meters(html)["Пользователи"]
    # Over the limit the bar is full (value = max) and past "high" (the limit): the browser paints it as bad.
    assert (seats["value"], seats["max"], seats["high"]) == ("9", "9", "5")
    assert "9 из 5" in text and "Превышено сверх лимита: 4" in text
    assert "Тариф превышен" in text
    assert "активных пользователей 9, а тариф допускает 5" in text
    assert "Подойдёт тариф «12 пользователей»" in text
    assert 'href="/plans?suggested=users-12"' in html


def test_storage_over_quota_suggests_a_plan_with_enough_storage(client, db, owner_of):
    account = owner_of(members=1)
    db.get(Account, account.id).storage_used_bytes = 6 * GiB  # over users-12's 5 GB too
    db.commit()
    resp = client.get("/")
    text = page_text(resp)
    storage = meters(resp.get_data(as_text=True))["Хранилище"]
    assert (storage["value"], storage["high"]) == (str(6 * GiB), str(2 * GiB))
    assert "занято 6 ГБ при квоте 2 ГБ" in text
    assert "Подойдёт тариф «24 пользователя» (24 ГБ)" in text


def test_free_and_within_limits_invites_to_look_at_plans(client, owner_of):
    owner_of(members=1)
    resp = client.get("/")
    text = page_text(resp)
    assert "Бесплатный тариф" in text and "До 5 пользователей и 2 ГБ хранилища" in text
    seats = meters(resp.get_data(as_text=True))["Пользователи"]
    assert (seats["value"], seats["max"], seats["low"], seats["high"]) == ("2", "5", "4.0", "5")
    assert "40 % использовано" in text


def test_paid_and_fine(client, owner_of, buy):
    account = owner_of(members=2)
    buy(account, "users-12", 12, msk(2026, 1, 10))
    text = page_text(client.get("/"))
    assert "Текущий тариф 12 пользователей Оплачен" in text
    assert "Оплачен по 9 января 2027 г." in text
    days = (date(2027, 1, 10) - date(2026, 3, 10)).days  # 10.03.2026 … 09.01.2027, today included
    assert days == 306 and f"осталось {days} дней" in text
    assert "Всё в порядке" in text


def test_near_the_end_the_next_step_is_to_renew(client, owner_of, buy):
    account = owner_of(members=2, now=msk(2026, 12, 20, 10))
    buy(account, "users-12", 12, msk(2026, 1, 10))
    resp = client.get("/")
    text = page_text(resp)
    assert "Оплаченный период заканчивается 9 января 2027 г." in text
    assert "осталось 21 день" in text
    assert 'href="/checkout?plan=users-12&amp;months=12">Продлить' in resp.get_data(as_text=True)


def test_a_scheduled_downgrade_is_listed(client, owner_of, buy):
    account = owner_of(members=2)
    buy(account, "users-50", 6, msk(2026, 1, 10))
    buy(account, "users-12", 12, msk(2026, 3, 1))
    text = page_text(client.get("/"))
    assert "Запланировано с 10.07.2026 переход на «12 пользователей» по 09.07.2027" in text
    assert "Оплачен по 9 июля 2027 г." in text


def test_a_trial_shows_its_last_day_and_the_way_to_pay(client, db, owner_of):
    account = owner_of(members=2)
    start_trial(db, actor=None, account_id=account.id, plan_code="users-24", now=msk(2026, 3, 1))
    db.commit()
    resp = client.get("/")
    text = page_text(resp)
    assert "Пробный период до 31 марта 2026 г." in text
    assert 'href="/checkout?plan=users-24&amp;months=12">Оплатить тариф' in resp.get_data(as_text=True)


def test_nearly_full_suggests_the_next_plan(client, owner_of, buy):
    account = owner_of(members=9)  # 10 of 12
    buy(account, "users-12", 12, msk(2026, 1, 10))
    resp = client.get("/")
    text = page_text(resp)
    assert "Места почти закончились" in text and "Свободно мест: 2 из 12" in text
    assert 'href="/plans?suggested=users-24"' in resp.get_data(as_text=True)


def test_a_member_sees_the_plan_and_whom_to_ask(client, auth, make_account, add_member, freeze):
    freeze(msk(2026, 3, 10))
    account = make_account(owner_phone=OWNER, members=6)
    add_member(account, "+79163331111", name="Пётр", role=Role.MEMBER)
    auth.login("+79163331111")
    resp = client.get("/")
    text = page_text(resp)
    assert "Тариф вашей компании и его лимиты" in text
    assert "Тариф компании превышен" in text and "Владелец должен оплатить подходящий тариф" in text
    assert "Кого спросить о тарифе" in text and "Владелец 1, владелец · +7 916 333-00-00" in text
    assert "Все тарифы" not in text and "Ожидают оплаты" not in text
    assert "Выбрать подходящий тариф" not in text


def test_demo_dashboards_render_for_every_role(app, client, auth, db):
    with app.app_context():  # as `flask seed-demo` runs it: features' seeds may read the config
        seed_demo_data(db)
    for phone in ("+79990000001", "+79990000002", "+79990000010", "+79990000003", "+79990000020"):
        auth.login(phone)
        resp = client.get("/")
        assert resp.status_code == 200
        assert len(meters(resp.get_data(as_text=True))) == 2
        auth.logout()
