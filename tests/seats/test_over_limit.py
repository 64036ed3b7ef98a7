"""The over-limit warning: a dialog with JavaScript, a banner without, for every signed-in user of an over-limit account."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from devtools.demo import DEMO_ACCOUNTANT, DEMO_MEMBERS, DEMO_OWNER, DEMO_SMALL_OWNER, seed_demo_data
from portal.accounts.models import Account
from portal.billing.catalog import GB
from portal.seats.storage import set_storage_used
from tests.conftest import Auth, post
from tests.seats.conftest import insert_members

ROOT = Path(__file__).resolve().parents[2]
TITLE = "Превышен тариф по количеству пользователей"


@pytest.fixture
def demo(app, db):
    with app.app_context():  # features' demo data may read settings (e.g. the license version)
        return seed_demo_data(db)


def _page(client, path="/") -> str:
    resp = client.get(path)
    assert resp.status_code == 200, resp.status_code
    return resp.get_data(as_text=True)


def _dialog(html: str) -> str:
    m = re.search(r"<dialog[^>]*>.*?</dialog>", html, re.S)
    assert m, "no <dialog> on the page"
    return m.group(0)


def _banner(html: str) -> str:
    m = re.search(r'<section class="limit-banner[^"]*".*?</section>', html, re.S)
    assert m, "no banner on the page"
    return m.group(0)


def _text(fragment: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", fragment).split())


def test_owner_sees_the_dialog_with_pay_and_team_buttons(client, auth, demo):
    auth.login(DEMO_OWNER)
    html = _page(client)
    dialog = _dialog(html)
    text = _text(dialog)
    assert TITLE in text
    assert "ООО «Ромашка» сейчас 9 активных пользователей, а тариф «5 пользователей» позволяет 5." in text
    assert "Нужно оплатить подходящий тариф или уменьшить число пользователей." in text
    # The checkout's own figure, and what it covers.
    assert re.search(
        r"Подходящий тариф — «12 пользователей»: 5 940,00 ₽ \(за 6 месяцев, с \d\d\.\d\d\.\d{4} по \d\d\.\d\d\.\d{4}\)\.",
        text.replace("\xa0", " "),
    )
    # Checkout with the suggested plan and the minimum period already chosen.
    assert 'href="/checkout?plan=users-12&amp;months=6"' in dialog and "Оплатить тариф «12 пользователей»" in text
    assert 'href="/team"' in dialog and "Управлять командой" in text
    assert re.search(r'<form method="dialog"[^>]*>\s*<button[^>]*>Понятно</button>', dialog)
    assert "обратитесь к нему" not in text
    # Accessible: labelled and described by its own heading and text.
    assert 'aria-labelledby="over-limit-dialog-title"' in dialog and 'id="over-limit-dialog-title"' in dialog
    assert 'aria-describedby="over-limit-dialog-text"' in dialog and 'id="over-limit-dialog-text"' in dialog
    assert "<dialog" in dialog and " open" not in dialog.split(">", 1)[0]  # opened by the script, not by markup


def test_a_member_is_told_whom_to_ask(client, auth, demo):
    auth.login(DEMO_MEMBERS[0][0])
    html = _page(client)
    for fragment in (_dialog(html), _banner(html)):
        text = _text(fragment)
        assert TITLE in text and "9 активных пользователей" in text and "позволяет 5" in text
        assert "обратитесь к нему: Анна Смирнова, +7 999 000-00-01." in text
        assert 'href="tel:+79990000001"' in fragment
        assert "Оплатить тариф «" not in text and 'href="/team"' not in fragment and "/checkout" not in fragment


def test_the_accountant_is_told_she_can_order_an_invoice(client, auth, demo):
    """The dialog once said only the owner could pay, while the accountant can order an invoice at checkout."""
    auth.login(DEMO_ACCOUNTANT)
    html = _page(client)
    for fragment in (_dialog(html), _banner(html)):
        text = _text(fragment)
        assert "Вы можете получить счёт на оплату этого тарифа" in text
        assert "Оплатить тариф или изменить состав команды может владелец" not in text
        assert 'href="/checkout?plan=users-12&amp;months=6"' in fragment and "Получить счёт" in text
        assert "Изменить состав команды может владелец аккаунта: Анна Смирнова" in text
        assert 'href="/team"' not in fragment
    # …and the link leads to a checkout that offers her exactly that.
    checkout = _page(client, "/checkout?plan=users-12&months=6")
    assert 'value="invoice"' in checkout and 'value="card"' not in checkout


def test_without_javascript_the_same_content_is_a_banner(client, auth, demo):
    auth.login(DEMO_OWNER)
    html = _page(client)
    banner = _banner(html)
    assert html.index("limit-banner") < html.index("<main")  # at the top, before the page's own content
    assert 'class="limit-banner has-dialog"' in banner  # hidden by CSS only once the script marks <html class="js">
    text = _text(banner)
    assert TITLE in text and "9 активных пользователей" in text and "«12 пользователей»" in text
    # One line says it all with a link; the rest unfolds on demand.
    line = re.search(r'<p class="limit-line".*?</p>', banner, re.S)
    assert line and "Тариф превышен: 9 из 5 пользователей." in _text(line.group(0))
    assert 'href="/checkout?plan=users-12&amp;months=6"' in line.group(0)
    assert re.search(r"<details class=\"limit-details\">\s*<summary>Подробнее</summary>", banner)
    assert "Оплатить тариф «12 пользователей»" in text and "Управлять командой" in text
    assert "Понятно" not in text  # nothing to close: the banner stays
    css = (ROOT / "static/css/portal.css").read_text()
    assert ".js .limit-banner.has-dialog { display: none; }" in css
    js = (ROOT / "static/js/over_limit.js").read_text()
    assert 'classList.add("js")' in js and "showModal" in js
    script = re.search(r'<script src="/static/js/over_limit.js"></script>', html)
    assert script and script.start() < html.index("limit-banner")  # runs before the banner is painted


def test_no_inline_script_or_style(client, auth, demo):
    auth.login(DEMO_OWNER)
    for path in ("/", "/team"):
        html = _page(client, path)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
        assert " style=" not in html


def test_the_company_under_its_limit_sees_nothing(client, auth, demo):
    auth.login(DEMO_SMALL_OWNER)
    html = _page(client)
    assert "limit-banner" not in html and "<dialog" not in html and "over_limit.js" not in html


def test_the_accountant_sees_it_for_the_over_limit_company_only(client, auth, demo):
    auth.login(DEMO_ACCOUNTANT)
    assert TITLE in _page(client)
    post(client, "/account/switch", {"account_id": demo["small"].id})
    assert TITLE not in _page(client)


def test_on_the_team_page_it_is_a_banner_not_a_dialog(client, auth, demo):
    auth.login(DEMO_OWNER)
    html = _page(client, "/team")
    banner = _banner(html)
    assert 'class="limit-banner"' in banner and TITLE in _text(banner)
    assert "<dialog" not in html
    assert "Управлять командой" not in _text(banner)  # the owner is already there


def test_every_page_shows_the_banner_but_the_dialog_once_per_session(client, auth, demo):
    """The dialog came back on every page; now it is shown once, and the banner stays as the reminder."""
    auth.login(DEMO_MEMBERS[1][0])
    first = _page(client, "/")
    assert "<dialog" in first
    for path in ("/", "/plans", "/profile"):
        html = _page(client, path)
        assert "<dialog" not in html, path
        assert 'class="limit-banner"' in html and TITLE in _text(_banner(html)), path
    # A new session (sign in again) is told again.
    auth.logout()
    auth.login(DEMO_MEMBERS[1][0])
    assert "<dialog" in _page(client, "/")


@pytest.mark.parametrize("path, status", [("/no-such-page", 404), ("/requisites", 403), ("/crm", 403)])
def test_no_dialog_on_error_pages(client, auth, demo, path, status):
    """The dialog covered the 403 page; an error page says only what went wrong."""
    auth.login(DEMO_MEMBERS[1][0])
    resp = client.get(path)
    assert resp.status_code == status
    html = resp.get_data(as_text=True)
    assert "<dialog" not in html
    # The session's one dialog is still owed: the next ordinary page shows it.
    assert "<dialog" in _page(client, "/")


def test_storage_over_quota_is_warned_the_same_way(db, client, auth, make_account):
    account = make_account(owner_phone="+79162000001", members=2)  # the free plan: 2 GB
    set_storage_used(db, account_id=account.id, used_bytes=3 * GB)
    db.commit()
    auth.login("+79162000001")
    text = _text(_dialog(_page(client)))
    assert "Превышен объём хранилища по тарифу" in text
    assert "Файлы занимают 3 ГБ, а тариф «5 пользователей» позволяет 2 ГБ." in text.replace("\xa0", " ")
    assert "удалить лишние файлы" in text and "«12 пользователей»" in text
    assert "Управлять командой" not in text  # seats are fine: the team page would not help


def test_storage_from_90_percent_is_a_softer_notice_on_the_dashboard(db, client, auth, make_account):
    account = make_account(owner_phone="+79162000002", members=2)
    set_storage_used(db, account_id=account.id, used_bytes=-(-2 * GB * 95 // 100))
    db.commit()
    auth.login("+79162000002")
    html = _page(client)
    assert "Хранилище почти заполнено" in html and "(95\xa0%)" in html.replace("&nbsp;", "\xa0")
    assert "limit-banner" not in html and "<dialog" not in html
    assert "Хранилище почти заполнено" not in _page(client, "/team")


def test_over_1000_users_the_owner_is_sent_to_support(db, client, auth, make_account):
    account = make_account(owner_phone="+79161000001")
    insert_members(db, account, 1000)
    auth.login("+79161000001")
    dialog = _dialog(_page(client))
    text = _text(dialog)
    assert "1001 активный пользователь" in text
    assert "служба поддержки подберёт индивидуальный" in text and "Написать в поддержку" in text
    assert "mailto:support@example.ru" in dialog and "/checkout" not in dialog


def _count_queries(app, client, path: str) -> int:
    engine = app.extensions["portal.db"].engine
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        resp = client.get(path)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert resp.status_code == 200
    return len(seen)


def test_a_page_costs_the_same_queries_with_1000_users_as_with_10(app, db, sms, make_account):
    make_account(owner_phone="+79161000010", members=9)  # 10 users
    big = make_account(owner_phone="+79161001000")
    insert_members(db, big, 999)  # 1 000 users
    assert db.scalar(sa.select(Account.id).where(Account.id == big.id))
    counts = {}
    for name, phone in (("small", "+79161000010"), ("big", "+79161001000")):
        client = app.test_client()
        Auth(client, sms).login(phone)
        client.get("/")  # warm up: the session's account is chosen on the first page
        counts[name] = {path: _count_queries(app, client, path) for path in ("/", "/team", "/api/v1/limits")}
        assert TITLE in client.get("/").get_data(as_text=True)  # both are over the free plan's 5
    assert counts["small"] == counts["big"], counts
