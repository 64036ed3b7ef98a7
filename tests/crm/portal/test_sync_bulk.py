"""A CRM's first import and its routine runs cost SQL by the batch, not by the user."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from portal.audit import AuditLog
from portal.seats.crm import apply as apply_module
from portal.seats.crm.models import CrmUserState
from portal.seats.departments import list_departments
from portal.seats.errors import UserNotFound
from portal.seats.events import register_membership_listener, unregister_membership_listener
from tests.crm.portal.conftest import NOW, Crm, connect


@contextmanager
def recorded_sql(crm: Crm) -> Iterator[list[str]]:
    """Every statement the portal's engine sends while open (a multi-row INSERT batch counts once)."""
    engine = crm.app.extensions["portal.db"].engine
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)


def test_a_first_import_of_600_users_costs_statements_by_the_batch_not_by_the_user(crm: Crm) -> None:
    people = crm.emulator.seed(600, seed=11)
    with_phone = [u for u in people if u.is_active and u.phone]

    with recorded_sql(crm) as sql:
        result = crm.sync()

    assert result.ok and result.first_import and result.counts["created"] == len(with_phone)
    # Each user the same rows as one add_user made: a membership, its department, an audit record, a journal line.
    entries = crm.entries(crm.runs()[-1].id)
    assert len([e for e in entries if e.kind == "user_created"]) == len(with_phone)
    added = crm.db.scalars(
        sa.select(AuditLog).where(AuditLog.account_id == crm.account.id, AuditLog.action == "seats.user_added")
    ).all()
    assert len(added) == len(with_phone)
    assert all(a.reason == "источник: CRM" or a.reason.startswith("источник:") for a in added)
    assert all(len(crm.department_names_of(m)) == 1 for m in crm.members() if m.crm_user_id is not None)
    # No savepoint per user (the four new departments keep theirs, and the users' insert has one for a race),
    # one account lock for all the users, and a few dozen statements for 600 users (before: about 17 each).
    assert len(crm.departments()) == 4
    assert len([s for s in sql if s.startswith("SAVEPOINT")]) <= 2 * 4 + 1
    assert len([s for s in sql if s.startswith("UPDATE accounts SET")]) <= 1 + 4
    assert len(sql) < 100, len(sql)


def test_a_routine_run_with_a_few_changes_costs_a_few_dozen_statements(crm: Crm) -> None:
    people = crm.emulator.seed(600, seed=12)
    assert crm.sync().ok
    movers = [u for u in people if u.is_active and u.phone and not u.is_admin][:5]
    groups = [g.id for g in crm.emulator.groups()]
    for u in movers:
        crm.emulator.move_user(u.id, next(g for g in groups if g != u.group_id))
    crm.emulator.add_user("Новый Сотрудник", "new@bulk.example", phone="+79161234500", group_id=groups[0])

    with recorded_sql(crm) as sql:
        result = crm.sync(now=NOW + timedelta(hours=1))

    assert result.ok and (result.counts["moved"], result.counts["created"]) == (5, 1)
    # Nested transactions only for the changes (a move: the applier's and the directory's), none for no-ops.
    assert len([s for s in sql if s.startswith("SAVEPOINT")]) <= 2 * 5 + 1
    assert len(sql) < 120, len(sql)


def _moves_outcome(c: Crm, events: list[Any]) -> dict[str, Any]:
    """What a routine run's moves left in one account, with the account's own ids read as names and CRM ids."""
    names = {d.id: d.name for d in list_departments(c.db, c.account.id)}
    by_user = {m.user_id: m.crm_user_id for m in c.members()}

    def named(ids: list[int]) -> list[str]:
        return sorted(names[i] for i in ids)

    audits = c.db.scalars(
        sa.select(AuditLog)
        .where(AuditLog.account_id == c.account.id, AuditLog.action == "seats.departments_changed")
        .order_by(AuditLog.id)
    ).all()
    return {
        "departments": {m.crm_user_id: c.department_names_of(m) for m in c.members()},
        "audit": [
            (
                by_user[a.before["user_id"]],
                named(a.before["department_ids"]),
                named(a.after["department_ids"]),
                a.reason,
                a.actor_label,
            )
            for a in audits
        ],
        # In the order written (Crm.entries leaves the order to the database, which PostgreSQL does not keep).
        "journal": [
            (e.kind, e.message, e.subject, e.crm_user_id)
            for e in sorted(c.entries(c.runs()[-1].id), key=lambda e: e.id)
        ],
        "events": [
            (
                e.kind,
                e.source,
                by_user[e.user.user_id],
                named(list(e.user.department_ids)),
                [named(ids) for ids in e.changes["department_ids"]],
            )
            for e in events
            if e.account_id == c.account.id
        ],
        "stamped": sorted(m.crm_user_id for m in c.members() if m.updated_at == NOW + timedelta(hours=1)),
    }


def test_moves_in_bulk_leave_the_rows_audit_journal_and_events_of_moves_one_by_one(
    crm: Crm, make_account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    twin = Crm(crm.app, crm.db, make_account(name="ООО «Лютик»", owner_phone="+79990000002"), crm.emulator, crm.url)
    connect(crm.app, crm.db, twin.account, crm.emulator, crm.url)
    people = crm.emulator.seed(80, seed=21)
    assert crm.sync().ok and twin.sync().ok
    groups = [g.id for g in crm.emulator.groups()]
    movers = [u for u in people if u.is_active and u.phone and not u.is_admin][:6]
    for u in movers:
        crm.emulator.move_user(u.id, next(g for g in groups if g != u.group_id))
    events: list[Any] = []

    def heard(db: Any, event: Any) -> None:
        events.append(event)

    register_membership_listener(heard)
    try:
        with recorded_sql(crm) as sql:
            bulk = crm.sync(now=NOW + timedelta(hours=1))

        # The twin account's run is refused the bulk path, so its moves go one by one, each in its savepoint.
        def refuse(*args: Any, **kwargs: Any) -> None:
            raise UserNotFound()

        monkeypatch.setattr(apply_module, "set_many_users_departments", refuse)
        one_by_one = twin.sync(now=NOW + timedelta(hours=1))
    finally:
        unregister_membership_listener(heard)

    assert bulk.ok and one_by_one.ok
    assert bulk.counts == one_by_one.counts and bulk.counts["moved"] == len(movers)
    assert _moves_outcome(crm, events) == _moves_outcome(twin, events)
    moved = _moves_outcome(crm, events)
    assert len(moved["audit"]) == len(moved["events"]) == len(moved["stamped"]) == len(movers)
    # One account lock and one savepoint for all the moves.
    assert len([s for s in sql if s.startswith("SAVEPOINT")]) == 1
    assert len([s for s in sql if s.startswith("UPDATE accounts SET")]) <= 1


def test_a_mirror_row_written_since_the_snapshot_does_not_fail_the_run(crm: Crm, monkeypatch: Any) -> None:
    """An outbox delivery remembers the CRM users it creates without the connection's lock; one it committed after
    a run read the mirror is written over with what the CRM says, instead of failing the run on the unique key."""
    crm.emulator.seed(20, seed=13)
    assert crm.sync().ok
    group = crm.emulator.groups()[0].id
    new = crm.emulator.add_user("Новый Сотрудник", "race@bulk.example", phone="+79161234501", group_id=group)
    write_mirror = apply_module.Applier.write_mirror

    def after_a_delivery(self: Any, crm_users: Any, plan: Any, stored: Any) -> None:
        self.db.add(
            CrmUserState(account_id=self.account_id, crm_user_id=new.id, name="Как создали из портала", is_free=True)
        )
        self.db.flush()
        write_mirror(self, crm_users, plan, stored)

    monkeypatch.setattr(apply_module.Applier, "write_mirror", after_a_delivery)
    result = crm.sync(now=NOW + timedelta(hours=1))

    assert result.ok and result.counts["created"] == 1
    row = crm.db.scalars(
        sa.select(CrmUserState).where(CrmUserState.account_id == crm.account.id, CrmUserState.crm_user_id == new.id)
    ).one()
    assert (row.name, row.is_free, row.group_id) == ("Новый Сотрудник", False, group)
