"""The directory service: every change counted in seats, audited, announced to listeners; bad changes refused."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.accounts.models import Membership, MembershipStatus, Role, User
from portal.audit import AuditLog, record_audit
from portal.seats.departments import (
    create_department,
    delete_department,
    find_department_by_crm_group,
    list_departments,
    rename_department,
)
from portal.seats.errors import (
    AccountNotFound,
    DepartmentInUse,
    DepartmentNotFound,
    DuplicateUser,
    InvalidUserData,
    LastOwnerError,
    MembershipConflict,
    UserNotActive,
    UserNotFound,
)
from portal.seats.events import EventKind, register_membership_listener, unregister_membership_listener
from portal.seats.limits import get_limits
from portal.seats.members import (
    add_user,
    change_role,
    deactivate_user,
    link_crm_user,
    reactivate_user,
    set_user_departments,
)
from portal.seats.queries import (
    count_active,
    count_active_owners,
    count_members,
    departments_of,
    find_member_by_crm_id,
    find_member_by_phone,
    get_member,
    get_primary_owner,
    list_members,
    list_users,
)
from tests.seats.conftest import NOW


def _seats(db, account) -> int:
    db.expire_all()
    return get_limits(db, account.id, NOW).seats_used


def _owner_id(db, account) -> int:
    return db.scalar(
        sa.select(Membership.user_id).where(Membership.account_id == account.id, Membership.role == Role.OWNER.value)
    )


def test_seat_count_follows_every_directory_change(db, make_account, now, events):
    account = make_account(members=2)  # owner + 2
    assert _seats(db, account) == 3

    added = add_user(
        db, account_id=account.id, phone="8 (916) 555-00-01", name="  Ирина   Белова ", source="portal", now=now
    )
    db.commit()
    assert added.created and added.membership.user.phone == "+79165550001"
    assert added.membership.user.name == "Ирина Белова"
    assert _seats(db, account) == 4

    uid = added.membership.user_id
    deactivate_user(db, account_id=account.id, user_id=uid, source="messenger", now=now)
    db.commit()
    assert _seats(db, account) == 3

    reactivate_user(db, account_id=account.id, user_id=uid, source="portal", now=now)
    db.commit()
    assert _seats(db, account) == 4

    change_role(db, account_id=account.id, user_id=uid, role="accountant", source="portal", now=now)
    db.commit()
    assert _seats(db, account) == 4  # a role is not a seat

    deactivate_user(db, account_id=account.id, user_id=uid, source="portal", now=now)
    again = add_user(db, account_id=account.id, phone="+79165550001", name="Ирина", source="crm", now=now)
    db.commit()
    assert not again.created and again.membership.id == added.membership.id
    assert again.membership.role == Role.MEMBER  # re-added with the role asked for
    assert _seats(db, account) == 4

    kinds = [(e.kind.value, e.source) for e in events]
    assert kinds == [
        ("added", "portal"),
        ("deactivated", "messenger"),
        ("reactivated", "portal"),
        ("role_changed", "portal"),
        ("deactivated", "portal"),
        ("reactivated", "crm"),
        ("role_changed", "crm"),
    ]
    assert events[0].user.phone == "+79165550001" and events[0].user.status == "active"
    assert events[1].user.status == "deactivated" and events[1].changes == {"status": ["active", "deactivated"]}
    assert events[3].changes == {"role": ["member", "accountant"]}

    actions = db.scalars(
        sa.select(AuditLog.action).where(AuditLog.account_id == account.id).order_by(AuditLog.id)
    ).all()
    assert actions == [
        "seats.user_added",
        "seats.user_deactivated",
        "seats.user_reactivated",
        "seats.role_changed",
        "seats.user_deactivated",
        "seats.user_reactivated",
        "seats.role_changed",
    ]
    reasons = db.scalars(
        sa.select(AuditLog.reason).where(AuditLog.account_id == account.id).order_by(AuditLog.id)
    ).all()
    assert reasons[1] == "источник: Мессенджер"


def test_deactivate_and_reactivate_are_idempotent(db, make_account, now, events):
    account = make_account(members=1)
    member_id = db.scalar(
        sa.select(Membership.user_id).where(Membership.account_id == account.id, Membership.role == Role.MEMBER.value)
    )
    for _ in range(2):
        deactivate_user(db, account_id=account.id, user_id=member_id, source="messenger", now=now)
        db.commit()
    for _ in range(2):
        reactivate_user(db, account_id=account.id, user_id=member_id, source="messenger", now=now)
        db.commit()
    assert [e.kind for e in events] == [EventKind.DEACTIVATED, EventKind.REACTIVATED]
    assert _seats(db, account) == 2


def test_an_existing_person_keeps_their_profile_and_the_company_keeps_its_own_record(db, make_account, now):
    """Issue #14: the e-mail a second company typed was written into the person's empty profile, and the next card
    receipt of her own company went there. Now each company's name and e-mail for her are its own."""
    first = make_account(owner_phone="+79160000100")
    second = make_account()
    add_user(
        db,
        account_id=second.id,
        phone="+79160000100",
        name="Другое имя",
        email="Boss@Example.RU",
        source="portal",
        now=now,
    )
    db.commit()
    person = db.scalars(sa.select(User).where(User.phone == "+79160000100")).one()
    assert person.name.startswith("Владелец") and person.email is None
    theirs = find_member_by_phone(db, second.id, "+79160000100")
    assert theirs.name == "Другое имя" and theirs.email == "Boss@example.ru"
    mine = find_member_by_phone(db, first.id, "+79160000100")
    assert mine.name.startswith("Владелец") and mine.email is None
    assert _seats(db, first) == 1 and _seats(db, second) == 2


@pytest.mark.parametrize(
    "phone, name, email, role, field",
    [
        ("12345", "Иван", None, "member", "phone"),
        ("", "Иван", None, "member", "phone"),
        ("+7 999 123-45-67", "   ", None, "member", "name"),
        ("+7 999 123-45-67", "Я" * 201, None, "member", "name"),
        ("+7 999 123-45-67", "Иван", "not-an-email", "member", "email"),
        ("+7 999 123-45-67", "Иван", None, "admin", "role"),
    ],
)
def test_bad_input_is_refused_with_the_field_and_changes_nothing(
    db, make_account, now, events, phone, name, email, role, field
):
    account = make_account()
    with pytest.raises(InvalidUserData) as err:
        add_user(db, account_id=account.id, phone=phone, name=name, email=email, role=role, source="portal", now=now)
    db.commit()
    assert err.value.field == field and err.value.status_code == 400
    assert err.value.message  # a Russian sentence for the person
    assert _seats(db, account) == 1 and events == []
    assert db.scalar(sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.account_id == account.id)) == 0


def test_duplicate_active_user_is_a_conflict(db, make_account, now):
    account = make_account(owner_phone="+79160000200")
    with pytest.raises(DuplicateUser) as err:
        add_user(db, account_id=account.id, phone="8 916 000-02-00", name="Снова я", source="messenger", now=now)
    assert err.value.status_code == 409
    assert "+7 916 000-02-00" in err.value.message and "уже есть в компании" in err.value.message
    db.rollback()
    assert _seats(db, account) == 1


def test_at_least_one_active_owner_always_remains(db, make_account, add_member, now):
    account = make_account(owner_phone="+79160000300")
    owner_id = _owner_id(db, account)
    with pytest.raises(LastOwnerError):
        deactivate_user(db, account_id=account.id, user_id=owner_id, source="portal", now=now)
    with pytest.raises(LastOwnerError) as err:
        change_role(db, account_id=account.id, user_id=owner_id, role="member", source="portal", now=now)
    assert err.value.status_code == 409 and "владелец" in err.value.message
    db.rollback()

    second = add_member(account, "+79160000301", "Второй владелец", role=Role.OWNER)
    change_role(db, account_id=account.id, user_id=owner_id, role="member", source="portal", now=now)
    db.commit()
    with pytest.raises(LastOwnerError):
        deactivate_user(db, account_id=account.id, user_id=second.id, source="portal", now=now)
    db.rollback()
    # A deactivated owner does not count: the remaining active owner is still the last one.
    change_role(db, account_id=account.id, user_id=owner_id, role="owner", source="portal", now=now)
    deactivate_user(db, account_id=account.id, user_id=owner_id, source="portal", now=now)
    db.commit()
    with pytest.raises(LastOwnerError):
        change_role(db, account_id=account.id, user_id=second.id, role="accountant", source="portal", now=now)
    assert count_active_owners(db, account.id) == 1


def test_users_of_another_account_and_unknown_accounts_are_not_found(db, make_account, now):
    mine = make_account()
    theirs = make_account(members=1)
    their_member = db.scalar(
        sa.select(Membership.user_id).where(Membership.account_id == theirs.id, Membership.role == Role.MEMBER.value)
    )
    for call in (deactivate_user, reactivate_user):
        with pytest.raises(UserNotFound):
            call(db, account_id=mine.id, user_id=their_member, source="messenger", now=now)
    with pytest.raises(UserNotFound):
        change_role(db, account_id=mine.id, user_id=their_member, role="owner", source="portal", now=now)
    with pytest.raises(AccountNotFound) as err:
        add_user(db, account_id=999_999, phone="+79161112233", name="Иван", source="messenger", now=now)
    assert err.value.status_code == 404
    db.rollback()
    assert _seats(db, theirs) == 2


def test_role_of_a_deactivated_user_cannot_change(db, make_account, now):
    account = make_account(members=1)
    member_id = db.scalar(
        sa.select(Membership.user_id).where(Membership.account_id == account.id, Membership.role == Role.MEMBER.value)
    )
    deactivate_user(db, account_id=account.id, user_id=member_id, source="portal", now=now)
    with pytest.raises(UserNotActive):
        change_role(db, account_id=account.id, user_id=member_id, role="owner", source="portal", now=now)


def test_changes_are_not_committed_by_the_service(app, db, make_account, now):
    account = make_account()
    add_user(db, account_id=account.id, phone="+79161112233", name="Иван", source="portal", now=now)
    other = app.extensions["portal.db"].sessionmaker()
    try:
        assert count_active(other, account.id) == 1  # a second connection does not see it yet
        db.rollback()
        assert count_active(db, account.id) == 1
        assert db.scalars(sa.select(User).where(User.phone == "+79161112233")).first() is None
    finally:
        other.close()


def test_a_listener_writes_in_the_same_transaction_and_can_refuse(db, make_account, now):
    """The CRM outbox hooks in here: its row commits or rolls back with the directory change."""
    account = make_account()

    def outbox(session, event):
        record_audit(session, actor=None, account=event.account_id, action="test.outbox", after={"kind": event.kind})

    def needs_email(_session, event):
        if event.kind == EventKind.ADDED and not event.user.email:
            raise InvalidUserData("Укажите почту: она нужна, чтобы создать пользователя в CRM.", field="email")

    register_membership_listener(outbox)
    register_membership_listener(outbox)  # registering twice calls it once
    try:
        add_user(db, account_id=account.id, phone="+79161110001", name="Первый", source="portal", now=now)
        db.rollback()
        add_user(db, account_id=account.id, phone="+79161110002", name="Второй", source="portal", now=now)
        db.commit()
        register_membership_listener(needs_email)
        with pytest.raises(InvalidUserData, match="Укажите почту"):
            add_user(db, account_id=account.id, phone="+79161110003", name="Третий", source="portal", now=now)
        db.commit()  # the caller's transaction is still usable, and the refused change is not in it
    finally:
        unregister_membership_listener(outbox)
        unregister_membership_listener(needs_email)
    outbox_rows = db.scalars(sa.select(AuditLog.after).where(AuditLog.action == "test.outbox")).all()
    assert outbox_rows == [{"kind": "added"}]
    phones = set(db.scalars(sa.select(User.phone)))
    assert "+79161110002" in phones and "+79161110001" not in phones and "+79161110003" not in phones
    assert _seats(db, account) == 2


def test_departments_and_crm_links(db, make_account, now, events):
    account = make_account(members=1)
    other = make_account()
    member_id = db.scalar(
        sa.select(Membership.user_id).where(Membership.account_id == account.id, Membership.role == Role.MEMBER.value)
    )
    sales = create_department(db, account_id=account.id, name="Продажи", crm_group_id=0, source="crm", now=now)
    support = create_department(db, account_id=account.id, name="Поддержка", source="portal", now=now)
    foreign = create_department(db, account_id=other.id, name="Чужой", source="portal", now=now)
    db.commit()
    with pytest.raises(MembershipConflict):
        create_department(db, account_id=account.id, name="Продажи 2", crm_group_id=0, source="crm", now=now)
    assert find_department_by_crm_group(db, account.id, 0).id == sales.id

    set_user_departments(
        db, account_id=account.id, user_id=member_id, department_ids=[sales.id, support.id], source="crm", now=now
    )
    db.commit()
    with pytest.raises(DepartmentNotFound):
        set_user_departments(
            db, account_id=account.id, user_id=member_id, department_ids=[foreign.id], source="crm", now=now
        )
    membership = get_member(db, account.id, member_id)
    assert [x.name for x in departments_of(db, [membership.id])[membership.id]] == ["Поддержка", "Продажи"]
    assert events[-1].kind == EventKind.DEPARTMENTS_CHANGED and events[-1].user.department_ids == tuple(
        sorted([sales.id, support.id])
    )

    with pytest.raises(DepartmentInUse):
        delete_department(db, account_id=account.id, department_id=sales.id, source="crm", now=now)
    rename_department(db, account_id=account.id, department_id=sales.id, name="Отдел продаж", source="crm", now=now)
    deactivate_user(db, account_id=account.id, user_id=member_id, source="portal", now=now)
    delete_department(db, account_id=account.id, department_id=sales.id, source="crm", now=now)
    db.commit()
    assert [x.name for x in list_departments(db, account.id)] == ["Поддержка"]

    added = add_user(
        db,
        account_id=account.id,
        phone="+79161234500",
        name="Из CRM",
        email="crm@example.ru",
        source="crm",
        now=now,
        crm_user_id=7001,
        department_ids=[support.id],
    )
    db.commit()
    assert added.membership.crm_user_id == 7001 and added.membership.source == "crm"
    assert find_member_by_crm_id(db, account.id, 7001).user_id == added.membership.user_id
    with pytest.raises(DuplicateUser):
        add_user(
            db, account_id=account.id, phone="+79161234501", name="Другой", source="crm", now=now, crm_user_id=7001
        )
    with pytest.raises(DuplicateUser):
        link_crm_user(db, account_id=account.id, user_id=member_id, crm_user_id=7001, source="crm", now=now)
    link_crm_user(db, account_id=account.id, user_id=member_id, crm_user_id=7002, source="crm", now=now)
    db.commit()
    snapshot = [u for u in list_users(db, account.id) if u.user_id == member_id][0]
    assert snapshot.crm_user_id == 7002 and snapshot.status == MembershipStatus.DEACTIVATED
    assert snapshot.as_json()["department_ids"] == [support.id]


def test_list_members_sorts_filters_and_searches(db, make_account, add_member, now):
    account = make_account(members=0, accountant_phone="+79160009999")
    add_member(account, "+79160001111", "Анна Смирнова")
    add_member(account, "+79160002222", "Борис Кузнецов")
    bob = db.scalar(sa.select(User.id).where(User.phone == "+79160002222"))
    deactivate_user(db, account_id=account.id, user_id=bob, source="portal", now=now)
    db.commit()
    names = [m.user.name for m in list_members(db, account.id)]
    assert names[0].startswith("Владелец") and names[1].startswith("Бухгалтер")
    assert names[2:] == ["Анна Смирнова", "Борис Кузнецов"]  # deactivated last
    assert [m.user.name for m in list_members(db, account.id, search="анна")] == ["Анна Смирнова"]
    assert [m.user.name for m in list_members(db, account.id, search="2222")] == ["Борис Кузнецов"]
    assert count_members(db, account.id, status="deactivated") == 1
    assert count_members(db, account.id, search="%") == 0  # wildcards are text, not patterns
    assert get_primary_owner(db, account.id).name.startswith("Владелец")


def test_list_users_of_a_big_account_keeps_every_department(db, make_account, now):
    from tests.seats.conftest import insert_members

    account = make_account()
    insert_members(db, account, 1000)
    dept = create_department(db, account_id=account.id, name="Склад", source="crm", now=now, crm_group_id=42)
    last = max(list_members(db, account.id), key=lambda m: m.id)
    set_user_departments(
        db, account_id=account.id, user_id=last.user_id, department_ids=[dept.id], source="crm", now=now
    )
    db.commit()
    users = list_users(db, account.id)
    assert len(users) == 1001
    assert [u.user_id for u in users if u.department_ids == (dept.id,)] == [last.user_id]
