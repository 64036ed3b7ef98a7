"""The owner's team page: add by phone and name, the confirmation beyond the plan, deactivate, reactivate, roles."""

from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa

from devtools.demo import DEMO_ACCOUNTANT, DEMO_MEMBERS, DEMO_OWNER, DEMO_SMALL_OWNER, seed_demo_data
from portal.accounts.models import Membership, MembershipStatus, Role, User
from portal.audit import AuditLog
from portal.seats.members import add_user
from portal.seats.queries import count_active
from tests.conftest import post
from tests.seats.conftest import NOW, insert_members


@pytest.fixture
def demo(app, db):
    with app.app_context():  # features' demo data may read settings (e.g. the license version)
        return seed_demo_data(db)


def _active(db, account) -> int:
    db.expire_all()
    return count_active(db, account.id)


def _membership(db, account, phone) -> Membership:
    db.expire_all()
    return db.scalars(
        sa.select(Membership).join(User).where(Membership.account_id == account.id, User.phone == phone)
    ).one()


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", html).replace("&nbsp;", " ").split())


def test_only_the_owner_has_the_team_page(client, auth, demo):
    auth.login(DEMO_OWNER)
    html = client.get("/").get_data(as_text=True)
    assert '<a href="/team"' in html and ">Команда</a>" in html
    page = client.get("/team")
    assert page.status_code == 200
    text = _text(page.get_data(as_text=True))
    assert "Активных пользователей 9 из 5" in text
    for name in ("Анна Смирнова", "Ольга Бухгалтерова", "Захар Лебедев"):
        assert name in text
    assert "+7 999 000-00-16" in text and "Сотрудник" in text and "Портал" in text and "Активен" in text
    auth.logout()
    for phone in (DEMO_ACCOUNTANT, DEMO_MEMBERS[0][0]):
        auth.login(phone)
        assert client.get("/team").status_code == 403
        assert ">Команда</a>" not in client.get("/").get_data(as_text=True)
        auth.logout()
    assert client.get("/team").status_code == 302  # visitors are sent to sign in


def test_adding_within_the_plan_needs_no_confirmation(db, client, auth, demo):
    small = demo["small"]
    before = _active(db, small)  # under the free plan's 5
    auth.login(DEMO_SMALL_OWNER)
    resp = post(client, "/team/users", {"phone": "8 916 555-00-01", "name": "Ирина Белова", "role": "member"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/team")
    assert _active(db, small) == before + 1
    page = _text(client.get("/team").get_data(as_text=True))
    assert "Ирина Белова (+7 916 555-00-01) теперь в команде." in page
    m = _membership(db, small, "+79165550001")
    assert (m.role, m.source, m.status) == ("member", "portal", "active")
    audit = db.scalars(sa.select(AuditLog).where(AuditLog.action == "seats.user_added")).one()
    assert audit.actor_label.startswith("Сергей Соколов") and audit.after["phone"] == "+79165550001"


def test_adding_beyond_the_plan_asks_the_owner_first(db, client, auth, demo):
    big = demo["big"]
    auth.login(DEMO_OWNER)
    form = {"phone": "+7 916 555-00-02", "name": "Пётр Иванов", "role": "accountant", "email": "petr@example.ru"}
    resp = post(client, "/team/users", form)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    text = _text(html)
    assert "После добавления в компании будет 10 активных пользователей, а тариф позволяет 5." in text
    assert "Пётр Иванов, +7 916 555-00-02, бухгалтер" in text
    assert "подойдёт тариф «12 пользователей»" in text
    assert _active(db, big) == 9  # nothing added yet
    for name, value in (("phone", "+79165550002"), ("name", "Пётр Иванов"), ("role", "accountant"), ("confirmed", "1")):
        assert f'name="{name}" value="{value}"' in html
    resp = post(client, "/team/users", {**form, "confirmed": "1"})
    assert resp.status_code == 302
    assert _active(db, big) == 10
    m = _membership(db, big, "+79165550002")
    assert m.role == Role.ACCOUNTANT and m.user.email == "petr@example.ru"


def test_the_confirmation_names_the_next_plan_when_12_become_13(db, client, auth, make_account):
    account = make_account(owner_phone="+79161200000", members=11)  # 12: the whole of users-12
    auth.login("+79161200000")
    resp = post(client, "/team/users", {"phone": "+79161200099", "name": "Тринадцатый", "role": "member"})
    text = _text(resp.get_data(as_text=True))
    assert "После добавления в компании будет 13 активных пользователей, а тариф позволяет 5." in text
    assert "подойдёт тариф «24 пользователя»" in text
    assert _active(db, account) == 12


@pytest.mark.parametrize(
    "form, message",
    [
        ({"phone": "12345", "name": "Иван"}, "Такого номера не существует"),
        ({"phone": "", "name": "Иван"}, "Укажите номер телефона."),
        ({"phone": "+79165550003", "name": ""}, "Укажите имя пользователя."),
        ({"phone": "+79165550003", "name": "Иван", "email": "ivan@"}, "Проверьте адрес почты"),
        (
            {"phone": "+79165550003", "name": "Иван", "role": "admin"},
            "Выберите роль: владелец, бухгалтер или сотрудник.",
        ),
    ],
)
def test_bad_input_is_shown_next_to_the_field_and_adds_nobody(db, client, auth, demo, form, message):
    auth.login(DEMO_SMALL_OWNER)
    before = _active(db, demo["small"])
    resp = post(client, "/team/users", {"role": "member", **form, "confirmed": "1"})
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert re.search(r'<p class="error" id="\w+-error">[^<]*' + re.escape(message), html) or message in html
    assert _active(db, demo["small"]) == before


def test_a_duplicate_active_user_is_refused(db, client, auth, demo):
    auth.login(DEMO_SMALL_OWNER)
    resp = post(client, "/team/users", {"phone": "8 999 000 00 20", "name": "Кто-то", "role": "member"})
    assert resp.status_code == 409
    assert "Пользователь с телефоном +7 999 000-00-20 уже есть в компании: Мария Соколова." in resp.get_data(
        as_text=True
    )


def test_deactivate_and_reactivate_from_the_team_page(db, client, auth, demo):
    big = demo["big"]
    auth.login(DEMO_OWNER)
    boris = _membership(db, big, DEMO_MEMBERS[0][0])
    resp = post(client, f"/team/users/{boris.user_id}/deactivate", {"confirmed": "1"})
    assert resp.status_code == 302 and _active(db, big) == 8
    assert _membership(db, big, DEMO_MEMBERS[0][0]).status == MembershipStatus.DEACTIVATED
    deactivated = _text(client.get("/team?status=deactivated").get_data(as_text=True))
    assert "Борис Кузнецов" in deactivated and "Включить" in deactivated and "Отключён" in deactivated

    # 8 active on a plan of 5: reactivating goes further beyond it, so the owner confirms first.
    resp = post(client, f"/team/users/{boris.user_id}/reactivate")
    assert resp.status_code == 200
    assert "После включения в компании будет 9 активных пользователей, а тариф позволяет 5." in _text(
        resp.get_data(as_text=True)
    )
    assert _active(db, big) == 8
    resp = post(client, f"/team/users/{boris.user_id}/reactivate", {"confirmed": "1"})
    assert resp.status_code == 302 and _active(db, big) == 9


def test_re_adding_a_deactivated_person_makes_them_active_again(db, client, auth, demo):
    small = demo["small"]
    auth.login(DEMO_SMALL_OWNER)
    maria = _membership(db, small, "+79990000020")
    post(client, f"/team/users/{maria.user_id}/deactivate", {"confirmed": "1"})
    resp = post(client, "/team/users", {"phone": "+79990000020", "name": "Мария", "role": "member"})
    assert resp.status_code == 302
    assert _membership(db, small, "+79990000020").status == MembershipStatus.ACTIVE
    assert "Мария Соколова снова в команде" in _text(client.get("/team").get_data(as_text=True))


def test_deactivation_asks_first_says_what_it_does_and_can_be_undone(db, client, auth, demo):
    """One click used to deactivate a person, with no confirmation and no way back."""
    big = demo["big"]
    auth.login(DEMO_OWNER)
    boris = _membership(db, big, DEMO_MEMBERS[0][0])
    resp = post(client, f"/team/users/{boris.user_id}/deactivate")
    assert resp.status_code == 200 and _active(db, big) == 9  # nothing done yet
    text = _text(resp.get_data(as_text=True))
    assert "Отключить пользователя?" in text and "Борис Кузнецов" in text
    assert "Место по тарифу освободится: активных пользователей станет 8 из 5." in text
    assert "В amoCRM" in text and "тоже будет отключён" in text  # the demo company has a CRM connected
    resp = post(client, f"/team/users/{boris.user_id}/deactivate", {"confirmed": "1"})
    assert resp.status_code == 302 and _active(db, big) == 8
    team = client.get("/team").get_data(as_text=True)
    assert "Борис Кузнецов отключён(а). Передумали?" in _text(team)
    undo = re.search(r'<form method="post" action="(/team/users/\d+/reactivate)".*?Отменить отключение', team, re.S)
    assert undo and undo.group(1) == f"/team/users/{boris.user_id}/reactivate"
    resp = post(client, undo.group(1), {"confirmed": "1"})
    assert resp.status_code == 302 and _active(db, big) == 9
    assert "Отменить отключение" not in client.get("/team").get_data(as_text=True)  # offered once


def test_the_last_owner_stays(db, client, auth, demo):
    big = demo["big"]
    auth.login(DEMO_OWNER)
    owner = _membership(db, big, DEMO_OWNER)
    page = client.get("/team").get_data(as_text=True)
    row = re.search(rf'<tr[^>]*id="user-{owner.user_id}".*?</tr>', page, re.S).group(0)
    assert "единственный владелец" in row and "Отключить" not in row and "<select" not in row
    for path, data in (
        (f"/team/users/{owner.user_id}/deactivate", {"confirmed": "1"}),
        (f"/team/users/{owner.user_id}/role", {"role": "member"}),
    ):
        resp = post(client, path, data, follow_redirects=True)
        assert "В компании должен остаться хотя бы один активный владелец." in resp.get_data(as_text=True)
    owner = _membership(db, big, DEMO_OWNER)
    assert (owner.status, owner.role) == ("active", "owner")


def test_change_role_and_hand_over_ownership(db, client, auth, demo):
    big = demo["big"]
    auth.login(DEMO_OWNER)
    vera = _membership(db, big, DEMO_MEMBERS[1][0])
    resp = post(client, f"/team/users/{vera.user_id}/role", {"role": "owner"})
    assert resp.status_code == 302 and _membership(db, big, DEMO_MEMBERS[1][0]).role == "owner"
    me = _membership(db, big, DEMO_OWNER)
    resp = post(client, f"/team/users/{me.user_id}/role", {"role": "member"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/"  # no longer an owner: no team page
    assert _membership(db, big, DEMO_OWNER).role == "member"
    assert client.get("/team").status_code == 403


def test_users_of_another_account_are_404(db, client, auth, demo):
    auth.login(DEMO_SMALL_OWNER)
    boris = _membership(db, demo["big"], DEMO_MEMBERS[0][0])
    for action in ("deactivate", "reactivate", "role"):
        assert post(client, f"/team/users/{boris.user_id}/{action}", {"role": "member"}).status_code == 404
    assert _membership(db, demo["big"], DEMO_MEMBERS[0][0]).status == "active"


def test_state_changes_need_the_csrf_token(db, client, auth, demo):
    auth.login(DEMO_SMALL_OWNER)
    resp = client.post("/team/users", data={"phone": "+79165550009", "name": "Без токена", "role": "member"})
    assert resp.status_code == 400
    assert db.scalars(sa.select(User).where(User.phone == "+79165550009")).first() is None


def _next_link(page: str) -> str:
    match = re.search(r'href="([^"]+)" rel="next"', page)
    assert match, "no «Дальше» link"
    return html.unescape(match.group(1))


def test_a_big_team_is_paged_and_searchable(db, client, auth, make_account):
    account = make_account(owner_phone="+79161300000")
    insert_members(db, account, 120)
    add_user(db, account_id=account.id, phone="+79163334455", name="Анна Смирнова", source="crm", now=NOW)
    db.commit()
    auth.login("+79161300000")
    first_html = client.get("/team").get_data(as_text=True)
    first = _text(first_html)
    assert "всего 122" in first and "Активные 122" in first and first_html.count('id="user-') == 50
    # The next pages are asked by the key of the last row shown (issue #18), not by a page number.
    second_html = client.get(_next_link(first_html)).get_data(as_text=True)
    assert second_html.count('id="user-') == 50 and "← Назад" in second_html
    last_html = client.get(_next_link(second_html)).get_data(as_text=True)
    assert last_html.count('id="user-') == 22 and "Дальше" not in last_html
    seen = set()
    for page in (first_html, second_html, last_html):
        seen |= set(re.findall(r'id="user-(\d+)"', page))
    assert len(seen) == 122
    found = client.get("/team?q=анна").get_data(as_text=True)
    assert "Анна Смирнова" in found and "CRM" in _text(found) and "Дальше" not in found
    assert "Никого не нашли по запросу «Зульфия»." in _text(client.get("/team?q=Зульфия").get_data(as_text=True))


def test_the_audit_of_team_changes_reads_in_russian_words(db, client, auth, demo):
    """Staff saw raw keys in the journal: `user_id`, `crm_user_id`, the source `portal`."""
    from portal.audit import AuditLog
    from portal.audit.labels import audit_changes

    big = demo["big"]
    auth.login(DEMO_OWNER)
    post(
        client,
        "/team/users",
        {
            "phone": "+79995557777",
            "name": "Ирина Белова",
            "role": "member",
            "email": "irina@example.ru",
            "confirmed": "1",
        },
        follow_redirects=True,
    )
    boris = _membership(db, big, DEMO_MEMBERS[0][0])
    post(client, f"/team/users/{boris.user_id}/deactivate", {"confirmed": "1"})
    post(client, f"/team/users/{boris.user_id}/reactivate", {"confirmed": "1"})
    post(client, f"/team/users/{boris.user_id}/role", {"role": "accountant"})
    entries = list(db.scalars(sa.select(AuditLog).where(AuditLog.action.like("seats.%"))))
    assert {e.action for e in entries} >= {"seats.user_added", "seats.user_deactivated", "seats.role_changed"}
    for entry in entries:
        for change in audit_changes(entry):
            assert not re.fullmatch(r"[a-z_]+", change.label), (entry.action, change)
            for value in (change.before, change.after):
                assert value not in {"portal", "messenger", "crm", "active", "deactivated"}, (entry.action, change)
