"""The portal against amoCRM's real shapes and limits (issue #21): default group, 100-user refusal, 50-char names."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from portal.seats.crm.base import CrmGroup, CrmUser
from portal.seats.crm.models import ConnectionStatus
from portal.seats.crm.plan import DepartmentRow, ImportUser, MemberRow, MembershipSnapshot, MoveUser, plan_sync
from tests.crm.portal.conftest import NOW, Crm
from tests.crm.portal.test_crm_pages import OWNER, page, text

DEFAULT = CrmGroup(0, "Отдел продаж")


def test_the_planner_places_a_user_with_a_null_group_in_the_default_groups_department() -> None:
    anna = CrmUser(5, "Анна", None, "+79160000005", True, False, False, None)
    boris = CrmUser(6, "Борис", None, None, True, False, False, None)
    linked = MemberRow(2, 102, "Борис", "+79160000006", None, True, 6)
    snap = MembershipSnapshot([linked], [DepartmentRow(10, "Отдел продаж", 0, 0)])

    plan = plan_sync([anna, boris], [DEFAULT], snap)

    [imported] = [a for a in plan.actions if isinstance(a, ImportUser)]
    assert imported.crm.group_id == 0
    [moved] = [a for a in plan.actions if isinstance(a, MoveUser)]
    assert (moved.member, moved.group_id) == (linked, 0)


def test_default_group_users_are_placed_in_the_default_department(crm: Crm) -> None:
    office = crm.emulator.add_group("Офис")
    anna = crm.emulator.add_user("Анна Смирнова", "anna@romashka.example", phone="+79161110001")  # default group
    crm.emulator.add_user("Борис Кузнецов", "boris@romashka.example", phone="+79161110002", group_id=office.id)

    crm.sync()

    assert crm.departments() == {0: "Отдел продаж", office.id: "Офис"}
    assert crm.department_names_of(crm.member_by_crm(anna.id)) == ["Отдел продаж"]
    assert crm.sync(now=NOW + timedelta(minutes=5)).changes == 0

    crm.emulator.move_user(anna.id, office.id)
    crm.sync(now=NOW + timedelta(minutes=10))
    assert crm.department_names_of(crm.member_by_crm(anna.id)) == ["Офис"]
    crm.emulator.move_user(anna.id, 0)
    crm.sync(now=NOW + timedelta(minutes=15))
    assert crm.department_names_of(crm.member_by_crm(anna.id)) == ["Отдел продаж"]


def test_a_crm_refusing_to_add_users_above_100_stalls_nothing_else_and_breaks_no_connection(
    crm: Crm, client: Any, auth: Any
) -> None:
    crm.emulator.seed(101, seed=7)
    crm.sync()
    leaving = next(m for m in crm.members() if m.crm_user_id is not None and m.role != "owner")
    crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")
    crm.deactivate_in_messenger(leaving)

    result = crm.deliver()

    assert (result.refused, result.delivered) == (1, 1)
    create, deactivate = crm.outbox()
    assert create.status == "refused" and "больше 100 пользователей" in create.last_error
    assert deactivate.status == "done" and not crm.emulator.user(leaving.crm_user_id).is_active
    connection = crm.connection()
    assert connection.status == ConnectionStatus.CONNECTED.value and connection.last_error is None

    # Later changes still go out at once; the refused one waits for the owner, not for a retry loop.
    crm.deactivate_in_messenger(next(m for m in crm.members("active") if m.crm_user_id and m.role != "owner"))
    later = crm.deliver(now=NOW + timedelta(minutes=1))
    assert (later.delivered, later.refused, later.retried) == (1, 0, 0)

    auth.login(OWNER)
    shown = text(page(client))
    assert "CRM не принимает запросы" not in shown
    assert "amoCRM не даёт добавлять пользователей через API" in shown
    assert (
        "Что можно сделать: добавьте Вера Попова в CRM вручную с почтой vera@romashka.example. При следующей "
        "синхронизации портал сам свяжет его с пользователем мессенджера" in shown
    )

    # The owner does so; the next sync links Vera and closes the refused task.
    vera = crm.emulator.add_user("Вера Попова", "vera@romashka.example", is_free=True)
    crm.sync(now=NOW + timedelta(minutes=5))
    assert crm.member_by_crm(vera.id).user.name == "Вера Попова"
    assert crm.outbox()[0].status == "done"


def test_a_long_or_symbol_laden_name_is_shortened_for_the_crm_and_the_owner_is_told(
    crm: Crm, client: Any, auth: Any
) -> None:
    long_name = "Константинопольская-Архангельская Александра Владимировна"
    crm.add_in_messenger("+79161230001", long_name, email="alexandra@romashka.example")
    crm.add_in_messenger("+79161230002", "Иван «Ваня» Петров", email="ivan@romashka.example")
    crm.add_in_messenger("+79161230003", "Вера Попова", email="vera@romashka.example")

    assert crm.deliver().delivered == 3

    assert {u.name for u in crm.emulator.users()} == {
        "Константинопольская-Архангельская Александра",
        "Иван Ваня Петров",
        "Вера Попова",
    }
    assert long_name in crm.active_names()  # the messenger keeps the name as typed
    auth.login(OWNER)
    shown = text(page(client))
    assert "Имена в CRM записаны короче: 2" in shown
    assert f"{long_name} Константинопольская-Архангельская Александра" in shown
    assert "Иван «Ваня» Петров Иван Ваня Петров" in shown
    # After the CRM's answer is read back by a sync, the page says the same.
    crm.sync()
    assert "Имена в CRM записаны короче: 2" in text(page(client))
