"""People belong to themselves (issue #14): a company sees and changes only what it typed about a person; the
person sees a company that added them, flagged as new, and can leave it."""

from __future__ import annotations

import re
from types import SimpleNamespace

import sqlalchemy as sa

from devtools.demo import DEMO_OWNER, seed_demo_data
from portal.accounts.models import Account, Membership, MembershipStatus, User
from portal.payments.service import customer_for
from portal.seats.members import add_user
from portal.seats.queries import count_active, list_users
from tests.conftest import csrf_token, post

STAFF_PHONE = "+79990000099"


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", html).replace("&nbsp;", " ").split())


def _register(client, auth, phone: str, company: str, name: str = "Чужой", email: str = "") -> None:
    auth.login(phone)
    resp = post(client, "/register", {"name": name, "company": company, "email": email})
    assert resp.status_code == 302, resp.get_data(as_text=True)


def _membership(db, account_id: int, phone: str) -> Membership:
    db.expire_all()
    return db.scalars(
        sa.select(Membership).join(User).where(Membership.account_id == account_id, User.phone == phone)
    ).one()


def test_a_stranger_adding_an_existing_phone_learns_nothing_and_changes_nothing(app, client, auth, db):
    with app.app_context():
        seed_demo_data(db)
    anna = db.scalars(sa.select(User).where(User.phone == DEMO_OWNER)).one()
    anna_name, anna_email = anna.name, anna.email
    demo_record = db.scalars(sa.select(Membership).where(Membership.user_id == anna.id)).first()
    demo_record_before = (demo_record.name, demo_record.email)

    _register(client, auth, "+79161110001", "ООО «Чужие»")
    for phone, typed in ((DEMO_OWNER, "Кто-то"), (STAFF_PHONE, "Ещё кто-то")):
        resp = post(
            client,
            "/team/users",
            {"phone": phone, "name": typed, "email": "stranger@evil.example", "role": "member", "confirmed": "1"},
            follow_redirects=True,
        )
        page = _text(resp.get_data(as_text=True))
        assert f"{typed} (" in page and "теперь в команде" in page
    team = _text(client.get("/team").get_data(as_text=True))
    assert anna_name not in team and "Сотрудник поддержки" not in team

    db.expire_all()
    anna = db.get(User, anna.id)
    assert (anna.name, anna.email) == (anna_name, anna_email)  # her own profile
    staff = db.scalars(sa.select(User).where(User.phone == STAFF_PHONE)).one()
    assert staff.email is None
    demo_record = db.get(Membership, demo_record.id)
    assert (demo_record.name, demo_record.email) == demo_record_before  # her company's record
    stranger = db.scalars(sa.select(Account).where(Account.name == "ООО «Чужие»")).one()
    theirs = _membership(db, stranger.id, DEMO_OWNER)
    assert theirs.name == "Кто-то" and theirs.email == "stranger@evil.example" and theirs.is_new


def test_the_receipt_goes_to_the_address_the_paying_company_gave(db, make_account, now):
    own = make_account(owner_phone="+79161110002")
    other = make_account()
    person = db.scalars(sa.select(User).where(User.phone == "+79161110002")).one()
    add_user(db, account_id=other.id, phone=person.phone, name="Х", email="evil@evil.example", source="portal", now=now)
    db.commit()
    order = SimpleNamespace(account_id=own.id, created_by_user_id=person.id)
    assert customer_for(db, order, None).email is None  # her own company has no address for her: the phone
    assert customer_for(db, order, None).phone == person.phone
    _membership(db, own.id, person.phone).email = "anna@own.example"
    db.commit()
    assert customer_for(db, order, None).email == "anna@own.example"
    assert customer_for(db, SimpleNamespace(account_id=other.id, created_by_user_id=person.id), None).email == (
        "evil@evil.example"
    )


def test_the_crm_and_the_api_get_the_company_record_not_the_profile(db, make_account, now):
    first = make_account(owner_phone="+79161110003")
    second = make_account()
    add_user(
        db, account_id=second.id, phone="+79161110003", name="Их имя", email="their@x.example", source="crm", now=now
    )
    db.commit()
    by_phone = {u.phone: u for u in list_users(db, second.id)}
    assert by_phone["+79161110003"].name == "Их имя" and by_phone["+79161110003"].email == "their@x.example"
    by_phone = {u.phone: u for u in list_users(db, first.id)}
    assert by_phone["+79161110003"].name.startswith("Владелец") and by_phone["+79161110003"].email is None


def test_the_person_sees_the_new_company_flagged_and_can_leave_it(app, client, auth, db, make_account, sms):
    mine = make_account(name="ООО «Моя»", owner_phone="+79161110004")
    _register(client, auth, "+79161110005", "ООО «Пригласившая»")
    post(client, "/team/users", {"phone": "+79161110004", "name": "Анна", "role": "member"})
    inviter = db.scalars(sa.select(Account).where(Account.name == "ООО «Пригласившая»")).one()
    assert count_active(db, inviter.id) == 2
    auth.logout()

    auth.login("+79161110004")
    home = client.get("/").get_data(as_text=True)
    assert "ООО «Пригласившая»" in home and "новая" in home
    page = client.get("/profile").get_data(as_text=True)
    assert "ООО «Пригласившая»" in page and "Покинуть" in page
    resp = post(client, "/account/leave", {"account_id": str(inviter.id)}, follow_redirects=True)
    assert "Вы покинули компанию ООО «Пригласившая»" in resp.get_data(as_text=True)
    assert "ООО «Пригласившая»" not in client.get("/profile").get_data(as_text=True)

    db.expire_all()
    assert _membership(db, inviter.id, "+79161110004").status == MembershipStatus.LEFT
    assert count_active(db, inviter.id) == 1  # the seat is freed
    assert _membership(db, mine.id, "+79161110004").is_active
    # The company sees them as left, and cannot switch them back on itself.
    auth.logout()
    auth.login("+79161110005")
    team = _text(client.get("/team?status=all").get_data(as_text=True))
    assert "Анна" in team and "Покинул(а) компанию" in team
    member = _membership(db, inviter.id, "+79161110004")
    resp = post(client, f"/team/users/{member.user_id}/reactivate", {"confirmed": "1"}, follow_redirects=True)
    assert "сам покинул компанию" in resp.get_data(as_text=True)
    assert count_active(db, inviter.id) == 1


def test_the_sole_owner_cannot_leave_their_company(client, auth, db, make_account):
    account = make_account(owner_phone="+79161110006")
    auth.login("+79161110006")
    resp = post(client, "/account/leave", {"account_id": str(account.id)}, follow_redirects=True)
    assert "должен остаться хотя бы один активный владелец" in resp.get_data(as_text=True)
    assert _membership(db, account.id, "+79161110006").is_active


def test_the_profile_is_the_persons_own(client, auth, db, make_account):
    account = make_account(owner_phone="+79161110007")
    before = _membership(db, account.id, "+79161110007")
    record = (before.name, before.email)
    auth.login("+79161110007")
    token = csrf_token(client, "/profile")
    resp = client.post("/profile", data={"name": "Анна Смирнова", "email": "anna@me.example", "csrf_token": token})
    assert resp.status_code == 302
    db.expire_all()
    user = db.scalars(sa.select(User).where(User.phone == "+79161110007")).one()
    assert (user.name, user.email) == ("Анна Смирнова", "anna@me.example")
    after = _membership(db, account.id, "+79161110007")
    assert (after.name, after.email) == record
