"""Messenger → CRM through the outbox, against the emulator over real HTTP: delivery, retries, refusals, no echo."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from portal.accounts.models import MembershipStatus
from portal.seats.crm.models import CrmOutbox, CrmUserState
from portal.seats.crm.outbox import BACKOFF_BASE, EMAIL_NEEDED, MAX_ATTEMPTS, deliver_outbox
from portal.seats.departments import find_department_by_crm_group
from portal.seats.members import add_user, set_user_departments
from tests.crm.portal.conftest import NOW, Crm


def crm_user_named(crm: Crm, name: str) -> Any:
    matches = [u for u in crm.emulator.users() if u.name == name]
    assert len(matches) <= 1, f"{name} is in the CRM {len(matches)} times"
    return matches[0] if matches else None


def test_a_user_added_in_the_messenger_is_created_in_the_crm_as_a_free_user(crm: Crm) -> None:
    member = crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")

    [item] = crm.outbox()
    assert (item.operation, item.status, item.membership_id) == ("create_user", "pending", member.id)
    assert "password" not in item.payload

    result = crm.deliver()

    created = crm_user_named(crm, "Вера Попова")
    assert result.delivered == 1
    assert created.email == "vera@romashka.example" and created.is_free and created.is_active
    [item] = crm.outbox()
    assert item.status == "done" and item.crm_user_id == created.id and item.delivered_at == NOW
    assert crm.member_by_crm(created.id).id == member.id


def test_no_echo_the_crm_user_the_messenger_created_is_not_imported_back(crm: Crm) -> None:
    crm.emulator.seed(3, seed=1)
    crm.sync()
    seats = crm.seats()
    crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")
    crm.deliver()

    result = crm.sync(now=NOW + timedelta(minutes=5))

    # Vera is known by her CRM id: not imported again; she only joins her CRM group's department.
    assert result.counts == {"moved": 1}
    assert crm.seats() == seats + 1
    assert [m.user.name for m in crm.members()].count("Вера Попова") == 1
    assert crm.outbox()[-1].status == "done"
    assert crm.sync(now=NOW + timedelta(minutes=6)).changes == 0


def test_a_messenger_user_in_a_crm_department_is_created_in_that_group(crm: Crm) -> None:
    office = crm.emulator.add_group("Офис")
    crm.sync()
    member = crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")
    dept = find_department_by_crm_group(crm.db, crm.account.id, office.id)
    set_user_departments(
        crm.db, account_id=crm.account.id, user_id=member.user_id, department_ids=[dept.id], source="portal", now=NOW
    )
    crm.db.commit()

    crm.deliver()

    assert crm_user_named(crm, "Вера Попова").group_id == office.id
    assert crm.sync(now=NOW + timedelta(minutes=5)).changes == 0


def test_no_echo_even_if_the_delivery_was_never_recorded(crm: Crm) -> None:
    """The CRM created the user but the portal crashed before saving that: the sync links by e-mail."""
    member = crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")
    crm.emulator.add_user("Вера Попова", "vera@romashka.example")  # what the lost delivery did

    result = crm.sync()

    assert result.counts["linked"] == 1 and "created" not in result.counts
    [item] = crm.outbox()
    assert item.status == "done"  # nothing left to send: it would only be refused as «e-mail taken»
    assert crm.member_by_crm(crm_user_named(crm, "Вера Попова").id).id == member.id
    kinds = [e.kind for e in crm.entries(result.run_id)]
    assert "outbox_resolved" in kinds


def test_a_user_without_email_is_kept_refused_with_the_reason(crm: Crm) -> None:
    crm.add_in_messenger("+79161230002", "Глеб Васильев")

    result = crm.deliver()

    assert result.refused == 1 and crm.emulator.users() == []
    [item] = crm.outbox()
    assert (
        item.status == "refused" and item.last_error == EMAIL_NEEDED == "Нужен e-mail, чтобы создать пользователя в CRM"
    )
    assert crm.deliver(now=NOW + timedelta(hours=2)).attempted == 0  # not retried blindly


def test_a_user_removed_in_the_messenger_is_deactivated_in_the_crm_and_stays_removed(crm: Crm) -> None:
    boris = crm.emulator.add_user("Борис Кузнецов", "boris@romashka.example", phone="+79161110000")
    crm.sync()
    member = crm.member_by_crm(boris.id)

    crm.deactivate_in_messenger(member)
    crm.deliver()

    assert not crm.emulator.user(boris.id).is_active
    # The next sync sees Boris inactive in the CRM: neither «removed in the CRM» nor a comeback.
    result = crm.sync(now=NOW + timedelta(minutes=5))
    assert result.changes == 0
    assert crm.member_by_crm(boris.id).status == MembershipStatus.DEACTIVATED
    # Re-enabled in the messenger: activated in the CRM again.
    crm.reactivate_in_messenger(member)
    crm.deliver()
    assert crm.emulator.user(boris.id).is_active
    assert crm.sync(now=NOW + timedelta(minutes=10)).changes == 0


def test_removal_before_delivery_cancels_the_creation(crm: Crm) -> None:
    member = crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")
    crm.deactivate_in_messenger(member)

    result = crm.deliver()

    assert result.attempted == 0 and crm.emulator.users() == []
    assert [(o.operation, o.status) for o in crm.outbox()] == [("create_user", "canceled")]


def test_crm_down_during_a_messenger_change_queues_it_then_delivers_when_back(crm: Crm) -> None:
    crm.emulator.down = True
    member = crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")
    crm.add_in_messenger("+79161230002", "Глеб Васильев", email="gleb@romashka.example")

    first = crm.deliver()

    # The directory is as the owner left it; nothing was lost, nothing sent twice.
    assert crm.member_by_crm(0) is None and member.id in {m.id for m in crm.members("active")}
    assert first.retried == 1  # the second item was not even tried against a CRM that is down
    items = crm.outbox()
    assert [o.status for o in items] == ["pending", "pending"]
    assert items[0].attempts == 1 and items[0].next_attempt_at == NOW + BACKOFF_BASE
    assert "CRM временно недоступна" in items[0].last_error
    assert items[1].attempts == 0 and items[1].next_attempt_at == NOW
    # Ten seconds later only Gleb's item is due; Vera's waits for its backoff.
    assert crm.deliver(now=NOW + timedelta(seconds=10)).retried == 1
    assert [o.attempts for o in crm.outbox()] == [1, 1]

    crm.emulator.down = False
    back = crm.deliver(now=NOW + timedelta(seconds=10) + BACKOFF_BASE)

    assert back.delivered == 2
    assert {u.name for u in crm.emulator.users()} == {"Вера Попова", "Глеб Васильев"}
    assert [o.status for o in crm.outbox()] == ["done", "done"]


def test_an_operation_that_keeps_failing_is_marked_failed_with_the_reason(crm: Crm) -> None:
    crm.emulator.down = True
    crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")
    when = NOW
    for _ in range(MAX_ATTEMPTS):
        crm.deliver(now=when, max_retries=0)
        [item] = crm.outbox()
        when = item.next_attempt_at if item.status == "pending" else when

    [item] = crm.outbox()
    assert item.status == "failed" and item.attempts == MAX_ATTEMPTS
    assert "CRM временно недоступна" in item.last_error and f"попыток: {MAX_ATTEMPTS}" in item.last_error
    crm.emulator.down = False
    assert crm.deliver(now=when + timedelta(days=1)).attempted == 0  # the owner decides (Повторить)


def test_rate_limiting_is_waited_out_within_the_delivery(crm: Crm) -> None:
    crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")
    crm.emulator.rate_limit_next(2)

    result = crm.deliver()

    assert result.delivered == 1 and len(crm.clock.sleeps) >= 2
    assert [r.status for r in crm.api_requests()][:3] == [429, 429, 200]


def test_the_crm_refusing_is_kept_visible_and_not_retried(crm: Crm) -> None:
    crm.emulator.plan_limit = 0
    crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")

    result = crm.deliver()

    assert result.refused == 1
    [item] = crm.outbox()
    assert item.status == "refused"
    assert "Превышен лимит пользователей тарифа CRM" in item.last_error
    assert crm.deliver(now=NOW + timedelta(hours=3)).attempted == 0


def test_the_crm_admin_cannot_be_deactivated_and_the_owner_is_told(crm: Crm) -> None:
    admin = crm.emulator.add_user("Анна Смирнова", "anna@romashka.example", phone="+79161119999", is_admin=True)
    crm.sync()
    crm.deactivate_in_messenger(crm.member_by_crm(admin.id))

    crm.deliver()

    [item] = crm.outbox()
    assert item.status == "refused" and "Нельзя отключить администратора аккаунта" in item.last_error
    assert crm.emulator.user(admin.id).is_active


def test_the_outbox_item_is_written_in_the_same_transaction_as_the_change(crm: Crm) -> None:
    add_user(crm.db, account_id=crm.account.id, phone="+79161230001", name="Вера", source="portal", now=NOW)
    crm.db.rollback()

    assert crm.outbox() == [] and crm.seats() == 1


def test_no_outbox_without_a_connected_crm(crm: Crm, make_account: Any) -> None:
    other = make_account(name="ИП Соколов")
    add_user(crm.db, account_id=other.id, phone="+79161230009", name="Павел", source="portal", now=NOW)
    crm.db.commit()

    assert crm.db.scalar(sa.select(sa.func.count()).select_from(CrmOutbox)) == 0


def test_the_crm_sync_own_changes_are_never_queued(crm: Crm) -> None:
    crm.emulator.seed(20, seed=11)
    crm.sync()
    assert crm.outbox() == []


def test_a_messenger_user_whose_email_the_crm_already_has_is_linked_not_created(crm: Crm) -> None:
    old = crm.emulator.add_user("Вера Попова", "vera@romashka.example")  # no phone: not imported
    crm.emulator.set_active(old.id, False)
    crm.sync()
    member = crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")

    crm.deliver()

    assert len(crm.emulator.users()) == 1
    assert crm.member_by_crm(old.id).id == member.id
    assert crm.emulator.user(old.id).is_active  # activated rather than created twice
    state = crm.db.scalars(sa.select(CrmUserState).where(CrmUserState.crm_user_id == old.id)).one()
    assert state.is_active and state.pending_reason is None


def test_two_workers_deliver_each_item_once_on_postgresql(crm: Crm, pg_url: str) -> None:
    for i in range(24):
        crm.add_in_messenger(f"+7916123{i:04d}", f"Сотрудник {i}", email=f"user{i}@romashka.example")
    database = crm.app.extensions["portal.db"]
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def worker() -> None:
        barrier.wait()
        results.append(deliver_outbox(database.session, crm.factory(), NOW, 100))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    creates = [r for r in crm.api_requests() if r.method == "POST" and r.path == "/api/v4/users"]
    assert len(creates) == 24  # one request per item: nobody sent twice, nobody refused as duplicate
    assert sum(r.delivered for r in results) == 24 and all(r.delivered for r in results)
    assert len(crm.emulator.users()) == 24
    assert {o.status for o in crm.outbox()} == {"done"}


@pytest.mark.parametrize("mode", ["sync", "task"])
def test_after_commit_delivery_sends_at_once(crm: Crm, mode: str) -> None:
    """`task` (the default outside tests) hands the delivery to the task queue, run where queued in tests; the
    web process starts no thread of its own for it (it used to, from the after-commit hook)."""
    crm.app.config["CRM_OUTBOX_DELIVERY"] = mode
    threads_before = set(threading.enumerate())
    with crm.app.app_context():
        crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")
    assert set(threading.enumerate()) <= threads_before

    assert crm_user_named(crm, "Вера Попова") is not None
    assert [o.status for o in crm.outbox()] == ["done"]
