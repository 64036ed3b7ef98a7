"""Fixtures for the portal side of the CRM sync: the portal's database, a live emulator, a connected account.

Here `client` is the Flask test client again (the adapter tests one level up use that name for the amoCRM client).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from devtools.crm_emulator import Emulator
from portal.accounts.models import Account, Membership, MembershipStatus, User
from portal.seats.crm.factory import CrmSettings, build_client, client_factory
from portal.seats.crm.models import CrmConnection, CrmOutbox, CrmSyncEntry, CrmSyncRun
from portal.seats.crm.oauth import Tokens
from portal.seats.crm.outbox import DeliveryResult, deliver_outbox
from portal.seats.crm.service import connect_account
from portal.seats.crm.sync import SyncResult, sync_account
from portal.seats.departments import find_department_by_crm_group, list_departments
from portal.seats.members import add_user, deactivate_user, reactivate_user
from portal.seats.models import Department
from portal.seats.queries import count_active, departments_of, find_member_by_crm_id, list_members
from tests.crm.conftest import FakeClock, RecordingSession

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@dataclass
class Crm:
    """One portal account connected to a live emulator, with helpers that read like the user story."""

    app: Flask
    db: Any
    account: Account
    emulator: Emulator
    url: str
    clock: FakeClock = field(default_factory=FakeClock)
    http: RecordingSession | None = None

    @property
    def settings(self) -> CrmSettings:
        return CrmSettings.from_config(self.app.config)

    @property
    def sessionmaker(self) -> Any:
        return self.app.extensions["portal.db"].sessionmaker

    def connection(self) -> CrmConnection:
        self.db.expire_all()
        row = self.db.scalars(sa.select(CrmConnection).where(CrmConnection.account_id == self.account.id)).one()
        return row

    def client(self, **options: Any) -> Any:
        if self.http is None:
            self.http = RecordingSession(self.clock)
        options.setdefault("session", self.http)
        options.setdefault("clock", self.clock)
        options.setdefault("sleep", self.clock.sleep)
        options.setdefault("rng", random.Random(0))
        return build_client(self.settings, self.connection(), self.sessionmaker, **options)

    def sync(self, now: datetime = NOW, **options: Any) -> SyncResult:
        with self.sessionmaker() as session:
            result = sync_account(session, self.account.id, self.client(**options), now)
        self.db.expire_all()
        return result

    def deliver(self, now: datetime = NOW, limit: int = 100, **options: Any) -> DeliveryResult:
        database = self.app.extensions["portal.db"]

        def make(connection: CrmConnection) -> Any:
            return self.client(**options)

        return deliver_outbox(database.session, make, now, limit)

    def factory(self, **options: Any) -> Callable[[CrmConnection], Any]:
        return client_factory(self.settings, self.sessionmaker, **options)

    # --- reading the directory like the team page does ---

    def members(self, status: str | None = None) -> list[Membership]:
        self.db.expire_all()
        return list_members(self.db, self.account.id, status=status)

    def active_names(self) -> set[str]:
        return {m.user.name for m in self.members(MembershipStatus.ACTIVE.value)}

    def member_by_crm(self, crm_id: int) -> Membership | None:
        self.db.expire_all()
        return find_member_by_crm_id(self.db, self.account.id, crm_id)

    def departments(self) -> dict[int | None, str]:
        self.db.expire_all()
        return {d.crm_group_id: d.name for d in list_departments(self.db, self.account.id)}

    def department_names_of(self, membership: Membership) -> list[str]:
        return [d.name for d in departments_of(self.db, [membership.id])[membership.id]]

    def runs(self) -> list[CrmSyncRun]:
        self.db.expire_all()
        return list(
            self.db.scalars(
                sa.select(CrmSyncRun).where(CrmSyncRun.account_id == self.account.id).order_by(CrmSyncRun.id)
            )
        )

    def entries(self, run_id: int) -> list[CrmSyncEntry]:
        return list(self.db.scalars(sa.select(CrmSyncEntry).where(CrmSyncEntry.run_id == run_id)))

    def outbox(self) -> list[CrmOutbox]:
        self.db.expire_all()
        return list(
            self.db.scalars(sa.select(CrmOutbox).where(CrmOutbox.account_id == self.account.id).order_by(CrmOutbox.id))
        )

    def seats(self) -> int:
        self.db.expire_all()
        return count_active(self.db, self.account.id)

    def add_in_messenger(self, phone: str, name: str, email: str | None = None) -> Membership:
        """The owner adds someone on the team page (source «portal»)."""
        result = add_user(
            self.db, account_id=self.account.id, phone=phone, name=name, email=email, source="portal", now=NOW
        )
        self.db.commit()
        return result.membership

    def deactivate_in_messenger(self, membership: Membership) -> None:
        deactivate_user(self.db, account_id=self.account.id, user_id=membership.user_id, source="portal", now=NOW)
        self.db.commit()

    def reactivate_in_messenger(self, membership: Membership) -> None:
        reactivate_user(self.db, account_id=self.account.id, user_id=membership.user_id, source="portal", now=NOW)
        self.db.commit()

    def api_requests(self) -> list[Any]:
        return [r for r in self.emulator.requests if r.path.startswith("/api/")]


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


@pytest.fixture
def crm_app_config(app_config: dict[str, Any], crm_url: str) -> dict[str, Any]:
    """Settings pointing the portal at the test's emulator (requested before `app`)."""
    app_config.update(
        CRM_BACKEND="emulator",
        CRM_EMULATOR_URL=crm_url,
        BASE_URL="http://localhost",
        CRM_OUTBOX_DELIVERY="off",
    )
    return app_config


def connect(app: Flask, db: Any, account: Account, emulator: Emulator, url: str, tokens: Tokens | None = None) -> None:
    """What the OAuth callback stores, minus the browser dance (tested on its own in test_connect)."""
    settings = CrmSettings.from_config(app.config)
    info = emulator.account()
    from portal.seats.crm.base import CrmAccountInfo

    connect_account(
        db,
        account_id=account.id,
        actor=None,
        backend="emulator",
        base_url=url,
        subdomain=info["subdomain"],
        info=CrmAccountInfo(info["id"], info["name"], info["subdomain"]),
        tokens=tokens or emulator.issue_tokens(),
        cipher=settings.cipher,
        now=NOW,
    )
    db.commit()


@pytest.fixture
def crm(crm_app_config: dict[str, Any], app: Flask, db: Any, make_account: Any, served: Any) -> Iterator[Crm]:
    url, emulator = served
    account = make_account(name="ООО «Ромашка»", owner_phone="+79990000001")
    connect(app, db, account, emulator, url)
    emulator.clear_requests()
    yield Crm(app, db, account, emulator, url)


def user_by_phone(db: Any, phone: str) -> User | None:
    return db.scalars(sa.select(User).where(User.phone == phone)).first()


def department(db: Any, account_id: int, crm_group_id: int) -> Department | None:
    return find_department_by_crm_group(db, account_id, crm_group_id)
