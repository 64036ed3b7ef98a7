"""The plans page for visitors and for each role of both demo companies; the period switcher works without JS."""

from __future__ import annotations

import re

import pytest

from devtools.demo import seed_demo_data
from portal.accounts.models import Role
from portal.billing.custom_plans import create_custom_plan
from portal.billing.subscriptions import count_active_users
from tests.billing.conftest import page_text
from tests.billing.terms import DISCOUNT, PUBLISHED, kopecks_per_month, msk, period_discount, period_total
from tests.conftest import post

PAID = [code for code, (_u, _s, roubles) in PUBLISHED.items() if roubles]
STORAGE_SHOWN = {
    "users-5": "2 ГБ",
    "users-12": "5 ГБ",
    "users-24": "24 ГБ",
    "users-50": "100 ГБ",
    "users-200": "300 ГБ",
    "users-500": "1 ТБ",
    "users-1000": "2 ТБ",
}


def rub(kopecks: int) -> str:
    """Russian money as a reader sees it: «11 048,40 ₽»."""
    roubles, kop = divmod(kopecks, 100)
    return f"{roubles:,}".replace(",", " ") + f",{kop:02d} ₽"


def card(html: str, code: str) -> str:
    m = re.search(rf'<article class="([^"]*)" id="plan-{re.escape(code)}".*?</article>', html, re.S)
    assert m, f"no card for {code}"
    return m.group(0)


def card_text(html: str, code: str) -> str:
    import html as h

    return re.sub(r"\s+", " ", h.unescape(re.sub(r"<[^>]+>", " ", card(html, code))).replace("\u00a0", " "))


def test_a_visitor_sees_seven_plans_with_prices_for_the_default_year(client):
    resp = client.get("/plans")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert len(re.findall(r'<article class="plan', html)) == 7
    free = card_text(html, "users-5")
    assert "Бесплатно" in free and "до 5 пользователей" in free and "2 ГБ хранилища" in free
    assert "Выбрать" not in free
    for code in PAID:
        seats, _storage, roubles = PUBLISHED[code]
        text = card_text(html, code)
        assert f"до {seats} пользовател" in text
        assert f"{STORAGE_SHOWN[code]} хранилища" in text
        assert rub(roubles * 100) + " в месяц" in text
        assert f"{rub(period_total(code, 12))} за 12 месяцев" in text
        assert f"Экономия {rub(period_discount(code, 12))}" in text
        assert f'href="/checkout?plan={code}&amp;months=12"' in card(html, code)
    text = page_text(resp)
    assert "Более 1000 пользователей — свяжитесь с поддержкой" in text
    assert "Ваш тариф" not in text
    assert "НДС не облагается (подп. 26 п. 2 ст. 149 НК РФ)" in text


@pytest.mark.parametrize("months", [6, 9, 12, 24])
def test_the_period_switcher_is_plain_links(client, months):
    html = client.get(f"/plans?months={months}").get_data(as_text=True)
    switcher = re.search(r'<nav class="periods".*?</nav>', html, re.S).group(0)
    for m in DISCOUNT:
        assert f'href="/plans?months={m}"' in switcher
    assert re.search(rf'href="/plans\?months={months}" aria-current="true"', switcher)
    for code in PAID:
        text = card_text(html, code)
        word = "месяца" if months == 24 else "месяцев"
        assert f"{rub(period_total(code, months))} за {months} {word}" in text
        if DISCOUNT[months]:
            saving = kopecks_per_month(code) * months - period_total(code, months)
            assert f"Экономия {rub(saving)}" in text
        else:
            assert "Экономия" not in text
        assert f"/checkout?plan={code}&amp;months={months}" in card(html, code)


def test_a_period_not_offered_falls_back_with_a_note(client):
    resp = client.get("/plans?months=7")
    assert resp.status_code == 200
    text = page_text(resp)
    assert "Такого периода оплаты нет" in text
    assert f"{rub(period_total('users-12', 12))} за 12 месяцев" in text


def test_a_suggested_plan_is_highlighted(client):
    html = client.get("/plans?suggested=users-50").get_data(as_text=True)
    assert "is-suggested" in card(html, "users-50").split(">")[0]
    assert "Рекомендуем" in card_text(html, "users-50")
    assert "is-suggested" not in card(html, "users-24").split(">")[0]
    # The switcher keeps the suggestion.
    assert 'href="/plans?months=24&amp;suggested=users-50"' in html


def test_demo_companies_see_the_page_in_every_role(app, client, auth, db):
    with app.app_context():  # as `flask seed-demo` runs it: features' seeds may read the config
        demo = seed_demo_data(db)
    big, small = demo["big"], demo["small"]
    big_users = count_active_users(db, big.id)
    small_users = count_active_users(db, small.id)
    assert big_users == 9 and 5 < big_users  # over the free plan, as the demo means to show
    assert small_users <= 12

    # owner, accountant and a member of ООО «Ромашка»: free plan, 9 users — too many for 5.
    for phone, role in [("+79990000001", "owner"), ("+79990000002", "accountant"), ("+79990000010", "member")]:
        auth.login(phone)
        resp = client.get("/plans")
        assert resp.status_code == 200, (phone, role)
        html = resp.get_data(as_text=True)
        assert "Ваш тариф" in card_text(html, "users-5")
        assert f"Мало для вашей команды: активных пользователей {big_users}" in card_text(html, "users-5")
        assert "Мало для вашей команды" not in card_text(html, "users-12")
        if role == "member":
            assert "Выбрать" not in html
            assert "Тариф выбирает и оплачивает владелец аккаунта: Анна Смирнова" in page_text(resp)
        else:
            assert 'href="/checkout?plan=users-12&amp;months=12"' in html
        auth.logout()

    # ИП Соколов: a few users on a paid users-12 (demo data), nothing is too small; its owner can renew.
    for phone in ("+79990000003", "+79990000020"):
        auth.login(phone)
        html = client.get("/plans").get_data(as_text=True)
        assert "Ваш тариф" in card_text(html, "users-12")
        assert "Мало для вашей команды" not in html
        auth.logout()
    auth.login("+79990000003")
    html = client.get("/plans").get_data(as_text=True)
    assert "Продлить" in card_text(html, "users-12")
    assert "(доплата до " in card_text(html, "users-24")  # a bigger plan is an upgrade for the days left
    auth.logout()

    # The accountant serves both companies: after switching she sees ИП Соколов's plan.
    auth.login("+79990000002")
    post(client, "/account/switch", {"account_id": str(small.id)})
    html = client.get("/plans").get_data(as_text=True)
    assert "Ваш тариф" in card_text(html, "users-12")


def test_too_small_counts_only_active_users(client, auth, db, make_account):
    from portal.accounts.models import Membership

    account = make_account(owner_phone="+79161110000", members=5)  # 6 active: over 5
    auth.login("+79161110000")
    assert "Мало для вашей команды: активных пользователей 6" in card_text(
        client.get("/plans").get_data(as_text=True), "users-5"
    )
    m = db.query(Membership).filter_by(account_id=account.id, role=Role.MEMBER.value).first()
    m.status = "deactivated"
    db.commit()
    assert "Мало для вашей команды" not in client.get("/plans").get_data(as_text=True)


def test_a_custom_plan_is_shown_only_to_its_account(client, auth, db, make_account):
    mine = make_account(owner_phone="+79161110001")
    make_account(owner_phone="+79161110002")
    custom = create_custom_plan(
        db,
        actor=None,
        account_id=mine.id,
        seats=1500,
        storage_bytes=3 * 1024**4,
        monthly_price=39_990_00,
        now=msk(2026, 3, 1),
    )
    db.commit()
    auth.login("+79161110001")
    html = client.get("/plans?months=9").get_data(as_text=True)
    text = card_text(html, custom.code)
    assert "Индивидуальный: 1500 пользователей" in text and "3 ТБ хранилища" in text
    assert f"{rub(39_990_00 * 9 * 95 // 100)} за 9 месяцев" in text
    auth.logout()
    auth.login("+79161110002")
    assert custom.code not in client.get("/plans").get_data(as_text=True)
    auth.logout()
    assert custom.code not in client.get("/plans").get_data(as_text=True)


def test_contact_support_for_more_than_1000_users(app, client):
    html = client.get("/plans").get_data(as_text=True)
    block = re.search(r'<section class="card plans-enterprise">.*?</section>', html, re.S).group(0)
    if "support.request_new" in app.view_functions:
        assert 'href="/support' in block
    else:
        assert f'href="mailto:{app.config["SUPPORT_EMAIL"]}"' in block
        assert app.config["SUPPORT_PHONE"] in block


def test_plans_is_in_the_header_for_everyone(client, auth, make_account):
    assert '<a href="/plans"' in client.get("/plans").get_data(as_text=True)
    make_account(owner_phone="+79161110003")
    auth.login("+79161110003")
    nav = re.search(r'<nav class="main-nav".*?</nav>', client.get("/").get_data(as_text=True), re.S).group(0)
    assert nav.index("Главная") < nav.index("Тарифы")
