"""The reconciliation planner on its own: a pure function from (CRM users, CRM groups, directory) to actions."""

from __future__ import annotations

from portal.seats.crm.base import CrmGroup, CrmUser
from portal.seats.crm.plan import (
    INACTIVE,
    NO_PHONE,
    CreateDepartment,
    DeleteDepartment,
    DepartmentRow,
    ImportUser,
    KeepPending,
    LinkUser,
    MarkRemoved,
    MemberRow,
    MembershipSnapshot,
    MirrorRow,
    MoveUser,
    ReactivateUser,
    RenameDepartment,
    plan_sync,
)

SALES = CrmGroup(0, "Отдел продаж")
OFFICE = CrmGroup(7, "Офис")


def crm_user(uid: int, *, email: str | None = None, phone: str | None = None, active: bool = True, group: int = 0):
    return CrmUser(uid, f"Человек {uid}", email, phone, active, False, False, group)


def member(mid: int, phone: str, *, email: str | None = None, active: bool = True, crm: int | None = None, depts=()):
    return MemberRow(mid, 100 + mid, f"Член {mid}", phone, email, active, crm, frozenset(depts))


def kinds(plan) -> list[str]:
    return [type(a).__name__ for a in plan.actions]


def test_crm_id_wins_over_email_and_phone() -> None:
    linked = member(1, "+79160000001", crm=55, depts=[10])
    same_email = member(2, "+79160000002", email="x@r.example")
    snap = MembershipSnapshot(
        [linked, same_email],
        [DepartmentRow(10, "Отдел продаж", 0, 1)],
        mirror={55: MirrorRow(55, True, 0)},
    )

    plan = plan_sync([crm_user(55, email="x@r.example", phone="+79160000002")], [SALES], snap)

    assert plan.actions == []
    assert plan.changes == 0


def test_email_is_tried_before_phone_and_a_member_is_claimed_once() -> None:
    by_phone = member(1, "+79160000001")
    by_email = member(2, "+79160000002", email="anna@r.example")
    snap = MembershipSnapshot([by_phone, by_email], [DepartmentRow(10, "Отдел продаж", 0)])

    plan = plan_sync(
        [
            crm_user(1, email="ANNA@r.example", phone="+79160000001"),
            crm_user(2, email="other@r.example", phone="+79160000001"),
        ],
        [SALES],
        snap,
    )

    links = [a for a in plan.actions if isinstance(a, LinkUser)]
    assert [(a.crm.id, a.member.membership_id, a.matched_by) for a in links] == [(1, 2, "email"), (2, 1, "phone")]


def test_new_active_users_are_imported_inactive_and_phoneless_are_not() -> None:
    snap = MembershipSnapshot([], [], first_import=True)

    plan = plan_sync(
        [crm_user(1, phone="+79160000001"), crm_user(2), crm_user(3, phone="+79160000003", active=False)],
        [SALES],
        snap,
    )

    assert kinds(plan) == ["CreateDepartment", "ImportUser", "KeepPending"]
    assert plan.mirror == {1: (None, False), 2: (NO_PHONE, False), 3: (INACTIVE, False)}
    assert plan.inactive_skipped == 1


def test_a_pending_messenger_removal_is_not_undone_by_the_crm_still_showing_the_user() -> None:
    gone = member(1, "+79160000001", active=False, crm=5, depts=[10])
    depts = [DepartmentRow(10, "Отдел продаж", 0, 0)]
    mirror = {5: MirrorRow(5, False, 0)}
    user = crm_user(5, phone="+79160000001")

    waiting = plan_sync([user], [SALES], MembershipSnapshot([gone], depts, mirror, frozenset({1})))
    delivered = plan_sync([user], [SALES], MembershipSnapshot([gone], depts, mirror))

    assert not any(isinstance(a, ReactivateUser) for a in waiting.actions)
    # Re-enabled in the CRM after the removal went through: that is the CRM adding them back.
    assert [type(a) for a in delivered.actions] == [ReactivateUser]


def test_removed_in_crm_marks_once_and_unmarks_when_back() -> None:
    m = member(1, "+79160000001", crm=5, depts=[10])
    depts = [DepartmentRow(10, "Отдел продаж", 0, 1)]

    removed = plan_sync(
        [crm_user(5, active=False)], [SALES], MembershipSnapshot([m], depts, {5: MirrorRow(5, True, 0)})
    )
    again = plan_sync(
        [crm_user(5, active=False)], [SALES], MembershipSnapshot([m], depts, {5: MirrorRow(5, False, 0, None, True)})
    )
    back = plan_sync([crm_user(5)], [SALES], MembershipSnapshot([m], depts, {5: MirrorRow(5, False, 0, None, True)}))

    assert removed.actions == [MarkRemoved(m, crm_user(5, active=False), True)]
    assert again.actions == []
    assert back.actions == [MarkRemoved(m, crm_user(5), False)]


def test_departments_of_vanished_groups_stay_while_used_and_go_when_empty() -> None:
    old_group_dept = DepartmentRow(11, "Склад", 3, 1)
    portal_dept = DepartmentRow(12, "Совет директоров", None, 0)
    m = member(1, "+79160000001", crm=5, depts=[11, 12])
    snap = MembershipSnapshot(
        [m], [DepartmentRow(10, "Продажи", 0, 0), old_group_dept, portal_dept], {5: MirrorRow(5, True, 3)}
    )

    still_there = plan_sync([crm_user(5, group=3)], [SALES], snap)  # the CRM did not list group 3
    moved_out = plan_sync([crm_user(5, group=0)], [SALES, OFFICE], snap)

    assert RenameDepartment(10, "Продажи", "Отдел продаж") in still_there.actions
    assert not any(isinstance(a, DeleteDepartment) for a in still_there.actions)
    assert CreateDepartment(7, "Офис") in moved_out.actions
    assert MoveUser(m, crm_user(5, group=0), 0) in moved_out.actions
    assert DeleteDepartment(11, "Склад") in moved_out.actions
    # The portal's own department is never touched by the sync.
    assert not any(getattr(a, "department_id", None) == 12 for a in moved_out.actions)


def test_planning_the_result_of_a_plan_gives_nothing_to_do() -> None:
    crm_users = [crm_user(1, phone="+79160000001"), crm_user(2, phone="+79160000002", group=7)]
    first = plan_sync(crm_users, [SALES, OFFICE], MembershipSnapshot([], [], first_import=True))
    assert sum(isinstance(a, ImportUser) for a in first.actions) == 2

    after = MembershipSnapshot(
        [member(1, "+79160000001", crm=1, depts=[10]), member(2, "+79160000002", crm=2, depts=[17])],
        [DepartmentRow(10, "Отдел продаж", 0, 1), DepartmentRow(17, "Офис", 7, 1)],
        {1: MirrorRow(1, True, 0), 2: MirrorRow(2, True, 7)},
    )
    assert plan_sync(crm_users, [SALES, OFFICE], after).actions == []


def test_only_messenger_users_are_named_on_the_first_import() -> None:
    here = member(1, "+79160000001")
    plan = plan_sync([crm_user(9, phone="+79160000009")], [SALES], MembershipSnapshot([here], [], first_import=True))
    assert plan.only_in_messenger == [here]
    assert isinstance(plan.actions[-1], ImportUser | KeepPending)
