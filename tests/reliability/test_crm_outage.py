"""The CRM is unreachable while the owner and the messenger change users: every change is kept, and once the CRM is
back it is delivered — once, even with two servers draining the outbox at the same moment."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from devtools.crm_emulator import Emulator, running_emulator
from portal.accounts.models import Membership, User
from portal.db import utcnow
from portal.seats.crm.base import CrmAccountInfo
from portal.seats.crm.factory import CrmSettings, client_factory
from portal.seats.crm.models import CrmConnection, CrmOutbox
from portal.seats.crm.outbox import deliver_outbox
from portal.seats.crm.service import connect_account
from portal.seats.crm.sync import sync_account
from tests.conftest import Auth, post

OWNER = "+79990000001"


@pytest.fixture
def served() -> Iterator[tuple[str, Emulator]]:
    with running_emulator() as pair:
        yield pair


@pytest.fixture
def app_config(app_config: dict[str, Any], served: tuple[str, Emulator]) -> dict[str, Any]:
    # "sync": each request tries to deliver right after its commit, as the demo's thread does, against a CRM that is
    # down; the outbox must keep what it could not send.
    app_config.update(CRM_BACKEND="emulator", CRM_EMULATOR_URL=served[0], CRM_OUTBOX_DELIVERY="sync")
    return app_config


def _deliver_together(app: Any, now: Any, workers: int = 2) -> list[Any]:
    database = app.extensions["portal.db"]
    factory = client_factory(CrmSettings.from_config(app.config), database.sessionmaker, max_retries=0)
    barrier = threading.Barrier(workers)
    results: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(deliver_outbox(database.session, factory, now, limit=100))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    return results


def test_changes_made_while_the_crm_is_down_are_all_delivered_once_when_it_returns(
    pg_url: str, app: Any, db: Any, client: Any, auth: Auth, make_account: Any, served: tuple[str, Emulator]
) -> None:
    url, emulator = served
    boris = emulator.add_user("Борис Кузнецов", "boris@romashka.example", phone="+79161110000")
    emulator.add_user("Вера Попова", "vera@romashka.example", phone="+79161110001")
    account = make_account(name="ООО «Ромашка»", owner_phone=OWNER)
    settings = CrmSettings.from_config(app.config)
    info = emulator.account()
    connect_account(
        db,
        account_id=account.id,
        actor=None,
        backend="emulator",
        base_url=url,
        subdomain=info["subdomain"],
        info=CrmAccountInfo(info["id"], info["name"], info["subdomain"]),
        tokens=emulator.issue_tokens(),
        cipher=settings.cipher,
        now=utcnow(),
    )
    db.commit()
    connection = db.scalars(sa.select(CrmConnection).where(CrmConnection.account_id == account.id)).one()
    with app.app_context():
        crm = client_factory(settings, app.extensions["portal.db"].sessionmaker)(connection)
        assert sync_account(db, account.id, crm, utcnow()).counts["created"] == 2  # Boris and Vera imported
    boris_user = db.scalars(sa.select(User).where(User.phone == "+79161110000")).one()

    emulator.down = True
    auth.login(OWNER)
    added = {f"Новый Сотрудник {i}": f"new{i}@romashka.example" for i in range(4)}
    for i, (name, email) in enumerate(added.items()):
        resp = post(
            client,
            "/team/users",
            {"phone": f"+7916222000{i}", "name": name, "email": email, "role": "member", "confirmed": "1"},
        )
        assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    resp = post(client, f"/team/users/{boris_user.id}/deactivate", {"confirmed": "1"})
    assert resp.status_code == 302
    # The messenger's own backend adds one too, through the API.
    resp = client.post(
        f"/api/v1/accounts/{account.id}/users",
        json={"phone": "+79162220009", "name": "Из Мессенджера", "email": "api@romashka.example"},
        headers={"Authorization": "Bearer test-messenger-token"},
    )
    assert resp.status_code == 201
    added["Из Мессенджера"] = "api@romashka.example"

    # The directory is as the people left it, whatever the CRM says.
    db.expire_all()
    active = {
        m.user.name
        for m in db.scalars(
            sa.select(Membership).where(Membership.account_id == account.id, Membership.status == "active")
        )
    }
    assert set(added) <= active and "Борис Кузнецов" not in active
    # Two servers try while it is still down: nothing is lost, nothing is marked done.
    _deliver_together(app, utcnow() + timedelta(minutes=1))
    db.expire_all()
    items = db.scalars(sa.select(CrmOutbox).where(CrmOutbox.account_id == account.id)).all()
    assert len(items) == len(added) + 1
    assert {i.status for i in items} == {"pending"} and all(i.attempts >= 1 for i in items)

    emulator.down = False
    results = _deliver_together(app, utcnow() + timedelta(hours=2))

    assert sum(r.delivered for r in results) == len(added) + 1
    db.expire_all()
    assert {i.status for i in db.scalars(sa.select(CrmOutbox).where(CrmOutbox.account_id == account.id))} == {"done"}
    in_crm = Counter(u.name for u in emulator.users())
    assert {name: in_crm[name] for name in added} == dict.fromkeys(added, 1)  # each created exactly once
    assert all(u.is_free for u in emulator.users() if u.name in added)
    assert not emulator.user(boris.id).is_active
    # The CRM accepted one creation per person (the refused tries while it was down were answered 503).
    creates = [r for r in emulator.requests if r.method == "POST" and r.path == "/api/v4/users" and r.status < 300]
    assert sorted(u["name"] for r in creates for u in r.body) == sorted(added)
