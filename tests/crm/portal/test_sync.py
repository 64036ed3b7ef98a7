"""Reconciliation against the emulator over real HTTP: the published rules, idempotence, a broken CRM answer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from portal.accounts.models import MembershipStatus
from portal.seats.crm.models import CrmConnection, CrmUserState
from tests.crm.conftest import RecordingSession
from tests.crm.portal.conftest import NOW, Crm


def test_first_connection_imports_every_active_crm_user_across_pages(crm: Crm) -> None:
    people = crm.emulator.seed(1100, seed=7)
    gone = [u for u in people if not u.is_admin][:25]
    for u in gone:
        crm.emulator.set_active(u.id, False)
    active = [u for u in people if u not in gone]
    with_phone = [u for u in active if u.phone]

    result = crm.sync()

    assert result.ok and result.first_import
    # Paid and free CRM users alike, each exactly once, linked by CRM id; the owner was already there.
    imported = [m for m in crm.members() if m.crm_user_id is not None]
    assert sorted(m.crm_user_id for m in imported) == sorted(u.id for u in with_phone)
    assert {m.user.phone for m in imported} == {u.phone for u in with_phone}
    assert any(u.is_free for u in with_phone) and any(not u.is_free for u in with_phone)
    assert crm.seats() == 1 + len(with_phone)
    assert result.counts["created"] == len(with_phone)
    # Removed CRM users are not brought over; those without a phone wait for one, named in the journal.
    assert not {u.id for u in gone} & {m.crm_user_id for m in imported}
    run = crm.runs()[-1]
    entries = crm.entries(run.id)
    pending = [e for e in entries if e.kind == "user_pending"]
    assert len(pending) == len(active) - len(with_phone)
    assert "нет телефона" in pending[0].message.lower() or "не указан телефон" in pending[0].message
    assert any("Отключённых пользователей CRM: 25" in e.message for e in entries)
    assert any("(бесплатный)" in e.message for e in entries) and any("(платный)" in e.message for e in entries)
    # Every page of 250 was read, following the CRM's own links.
    pages = [r.query for r in crm.api_requests() if r.path == "/api/v4/users" and r.method == "GET"]
    assert [q.split("page=")[1].split("&")[0] for q in pages] == ["1", "2", "3", "4", "5"]
    assert crm.departments() == {0: "Отдел продаж", 1: "Бухгалтерия", 2: "Техподдержка", 3: "Логистика"}


def test_second_run_changes_nothing_and_costs_a_bounded_number_of_requests(crm: Crm) -> None:
    crm.emulator.seed(600, seed=3)
    first = crm.sync()
    members_before = [(m.id, m.status, m.crm_user_id) for m in crm.members()]
    crm.emulator.clear_requests()

    second = crm.sync(now=NOW + timedelta(hours=1))

    assert first.ok and first.changes > 300
    assert second.ok and second.changes == 0 and not second.first_import
    assert second.message == "Синхронизация выполнена: изменений нет."
    assert [(m.id, m.status, m.crm_user_id) for m in crm.members()] == members_before
    assert [e.kind for e in crm.entries(crm.runs()[-1].id)] == []
    # One request for the groups and one per page of 250 users: nothing per user.
    assert len(crm.api_requests()) == 1 + 3
    # The mirror rows were not rewritten either.
    stamps = set(crm.db.scalars(sa.select(CrmUserState.updated_at).where(CrmUserState.account_id == crm.account.id)))
    assert stamps == {NOW}


def test_user_added_in_crm_is_created_in_the_messenger_in_their_department(crm: Crm) -> None:
    crm.emulator.seed(3, seed=1)
    crm.sync()
    support = crm.emulator.add_group("Поддержка VIP")
    zoya = crm.emulator.add_user("Зоя Белова", "zoya@romashka.example", phone="+7 916 555-12-34", group_id=support.id)

    result = crm.sync(now=NOW + timedelta(minutes=10))

    member = crm.member_by_crm(zoya.id)
    assert member is not None and member.is_active
    assert member.user.name == "Зоя Белова" and member.user.phone == "+79165551234"
    assert member.user.email == "zoya@romashka.example" and member.source == "crm"
    assert crm.department_names_of(member) == ["Поддержка VIP"]
    assert result.counts == {"created": 1, "departments_created": 1}
    messages = [e.message for e in crm.entries(result.run_id)]
    assert "Добавлен в CRM — создан в мессенджере, отдел «Поддержка VIP»" in messages


def test_user_removed_in_crm_stays_active_in_the_messenger_and_the_link_is_marked(crm: Crm) -> None:
    crm.emulator.seed(3, seed=2)
    leaver = crm.emulator.add_user("Жанна Волкова", "zhanna@romashka.example", phone="+79161234567")
    crm.sync()
    seats = crm.seats()

    crm.emulator.remove_user(leaver.id)
    result = crm.sync(now=NOW + timedelta(days=1))

    member = crm.member_by_crm(leaver.id)
    assert member is not None and member.status == MembershipStatus.ACTIVE
    assert member.crm_user_id == leaver.id  # the link is kept
    assert crm.seats() == seats
    state = crm.db.scalars(sa.select(CrmUserState).where(CrmUserState.crm_user_id == leaver.id)).one()
    assert state.removed_in_crm_at == NOW + timedelta(days=1) and not state.is_active
    [entry] = crm.entries(result.run_id)
    assert entry.kind == "user_removed_in_crm" and entry.subject == leaver.name
    assert "в мессенджере остаётся активным" in entry.message
    # Nothing more the next time, and the mark goes away when the CRM takes them back.
    assert crm.sync(now=NOW + timedelta(days=2)).changes == 0
    crm.emulator.set_active(leaver.id, True)
    back = crm.sync(now=NOW + timedelta(days=3))
    assert [e.kind for e in crm.entries(back.run_id)] == ["user_back_in_crm"]
    crm.db.expire_all()
    assert crm.db.get(CrmUserState, state.id).removed_in_crm_at is None


def test_groups_become_departments_and_follow_renames_and_moves(crm: Crm) -> None:
    sales = crm.emulator.groups()[0]
    empty = crm.emulator.add_group("Склад")
    office = crm.emulator.add_group("Офис")
    anna = crm.emulator.add_user("Анна Смирнова", "anna@romashka.example", phone="+79990000001", group_id=office.id)
    boris = crm.emulator.add_user("Борис Кузнецов", "boris@romashka.example", phone="+79161110000", group_id=sales.id)

    crm.sync()

    assert crm.departments() == {sales.id: "Отдел продаж", empty.id: "Склад", office.id: "Офис"}
    assert crm.department_names_of(crm.member_by_crm(boris.id)) == ["Отдел продаж"]

    crm.emulator.rename_group(sales.id, "Продажи")
    crm.emulator.move_user(boris.id, office.id)
    result = crm.sync(now=NOW + timedelta(hours=1))

    # The department keeps its identity (same row, new name); an empty one stays, as the CRM still has it.
    assert crm.departments() == {sales.id: "Продажи", empty.id: "Склад", office.id: "Офис"}
    assert crm.department_names_of(crm.member_by_crm(boris.id)) == ["Офис"]
    assert result.counts == {"departments_renamed": 1, "moved": 1}
    messages = [e.message for e in crm.entries(result.run_id)]
    assert "Группа переименована в CRM — отдел «Отдел продаж» теперь называется «Продажи»" in messages
    assert "Переведён в CRM в другую группу — теперь в отделе «Офис»" in messages
    # The owner was matched by phone, not duplicated.
    owner = crm.member_by_crm(anna.id)
    assert owner is not None and owner.role == "owner" and len(crm.members()) == 2


def test_people_already_in_the_messenger_are_matched_by_email_then_phone_never_duplicated(crm: Crm) -> None:
    by_email = crm.add_in_messenger("+79161230001", "Вера Попова", email="Vera@Romashka.example")
    by_phone = crm.add_in_messenger("+79161230002", "Глеб Васильев")
    vera = crm.emulator.add_user("Вера П.", "vera@romashka.example", phone="+79160009999")
    gleb = crm.emulator.add_user("Глеб Васильев", "gleb@romashka.example", phone="8 (916) 123-00-02")

    result = crm.sync()

    assert result.counts == {"linked": 2, "departments_created": 1}
    assert crm.member_by_crm(vera.id).id == by_email.id
    assert crm.member_by_crm(gleb.id).id == by_phone.id
    assert crm.seats() == 3
    messages = {e.subject: e.message for e in crm.entries(result.run_id) if e.kind == "user_linked"}
    assert messages["Вера Попова"] == (
        "Уже есть в мессенджере — связан с пользователем CRM по e-mail, повторно не создан; "
        "отдел «Отдел продаж», как группа в CRM"
    )
    assert "по телефону" in messages["Глеб Васильев"]
    assert crm.department_names_of(by_phone) == ["Отдел продаж"]
    assert not [e for e in crm.entries(result.run_id) if e.kind == "user_moved"]


def test_a_deactivated_messenger_user_added_in_crm_comes_back(crm: Crm) -> None:
    member = crm.add_in_messenger("+79161230003", "Дарья Новикова")
    crm.deactivate_in_messenger(member)
    crm.emulator.add_user("Дарья Новикова", "darya@romashka.example", phone="+79161230003")

    result = crm.sync()

    assert result.counts["reactivated"] == 1
    assert crm.member_by_crm(crm.emulator.users()[-1].id).status == MembershipStatus.ACTIVE


def test_two_crm_users_with_one_phone_do_not_become_one_messenger_user(crm: Crm) -> None:
    first = crm.emulator.add_user("Егор Морозов", "egor@romashka.example", phone="+79161112233")
    second = crm.emulator.add_user("Егор Морозов (2)", "egor2@romashka.example", phone="+79161112233")

    result = crm.sync()

    assert crm.member_by_crm(first.id) is not None and crm.member_by_crm(second.id) is None
    pending = [e for e in crm.entries(result.run_id) if e.kind == "user_pending"]
    assert len(pending) == 1 and "уже у пользователя «Егор Морозов»" in pending[0].message
    assert crm.sync(now=NOW + timedelta(hours=1)).changes == 0
    assert [e.kind for e in crm.entries(crm.runs()[-1].id)] == []  # said once, not on every run


class BreakOnPage(RecordingSession):
    """Makes the CRM answer page 2 of the user list with broken JSON, after page 1 was fine."""

    def __init__(self, crm: Crm) -> None:
        super().__init__(crm.clock)
        self.crm = crm

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        if "page=2" in str(url):
            self.crm.emulator.malformed_next(1)
        return super().request(method, url, *args, **kwargs)


def test_a_malformed_crm_answer_stops_the_run_with_a_clear_entry_and_changes_nothing(crm: Crm) -> None:
    crm.emulator.seed(400, seed=5)

    result = crm.sync(session=BreakOnPage(crm))

    assert not result.ok
    assert crm.members() and len(crm.members()) == 1  # only the owner, as before
    assert crm.departments() == {}
    assert crm.db.scalar(sa.select(sa.func.count()).select_from(CrmUserState)) == 0
    run = crm.runs()[-1]
    assert run.status == "failed" and run.first_import
    [entry] = crm.entries(run.id)
    assert entry.kind == "error"
    assert entry.message == (
        "CRM вернула ответ, который не удалось разобрать как JSON. "
        "Синхронизация остановлена до изменений: в мессенджере ничего не изменено"
    )
    connection = crm.db.scalars(sa.select(CrmConnection)).one()
    assert connection.last_sync_status == "failed" and connection.imported_at is None
    # The next run, with the CRM healthy again, is still the first import.
    again = crm.sync(now=NOW + timedelta(minutes=5))
    assert again.ok and again.first_import and again.counts["created"] > 200


def test_rate_limited_crm_is_waited_for_not_given_up(crm: Crm) -> None:
    crm.emulator.seed(30, seed=9)
    crm.emulator.rate_limit_next(2, retry_after=3)

    result = crm.sync()

    assert result.ok and result.counts["created"] > 10
    assert crm.clock.sleeps[:2] and min(crm.clock.sleeps[:2]) >= 3
    assert [r.status for r in crm.api_requests()][:3] == [429, 429, 200]


def test_crm_down_for_the_whole_run_is_journaled_and_changes_nothing(crm: Crm) -> None:
    crm.emulator.seed(5, seed=4)
    crm.emulator.down = True

    result = crm.sync()

    assert not result.ok and "CRM временно недоступна" in result.error
    assert len(crm.members()) == 1


def test_connecting_a_different_crm_account_forgets_the_old_links(crm: Crm) -> None:
    from portal.seats.crm.base import CrmAccountInfo
    from portal.seats.crm.service import connect_account

    boris = crm.emulator.add_user("Борис Кузнецов", "boris@romashka.example", phone="+79161110000")
    crm.sync()
    assert crm.member_by_crm(boris.id) is not None

    connect_account(
        crm.db,
        account_id=crm.account.id,
        actor=None,
        backend="emulator",
        base_url=crm.url,
        subdomain="other",
        info=CrmAccountInfo(99, "ООО «Другая»", "other"),
        tokens=crm.emulator.issue_tokens(),
        cipher=crm.settings.cipher,
        now=NOW + timedelta(days=1),
    )
    crm.db.commit()

    # CRM ids of another account mean nothing here: the people stay, their links go, the next run imports anew.
    assert crm.member_by_crm(boris.id) is None and crm.seats() == 2
    assert crm.db.scalar(sa.select(sa.func.count()).select_from(CrmUserState)) == 0
    assert crm.connection().imported_at is None
    assert crm.departments() == {None: "Отдел продаж"}  # kept, no longer tied to a group id of the old CRM
    again = crm.sync(now=NOW + timedelta(days=1))
    assert again.first_import and again.counts == {"linked": 1, "departments_created": 1}
