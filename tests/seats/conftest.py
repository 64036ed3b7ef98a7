"""Seats fixtures: a fixed time, bulk members for big-company tests, a recording directory listener."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from portal.accounts.models import Account, Membership, MembershipStatus, Role, Source, User
from portal.seats.events import MembershipEvent, register_membership_listener, unregister_membership_listener

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    return NOW


def insert_members(db: Any, account: Account, n: int, *, prefix: str = "+7925") -> None:
    """n more active members in two INSERTs (1 000 users in well under a second), committed."""
    base = db.scalar(sa.select(sa.func.count()).select_from(User)) or 0
    phones = [f"{prefix}{base + i:07d}" for i in range(n)]
    db.execute(sa.insert(User), [{"phone": p, "name": f"Сотрудник {p[-4:]}", "created_at": NOW} for p in phones])
    ids = db.scalars(sa.select(User.id).where(User.phone.in_(phones))).all()
    db.execute(
        sa.insert(Membership),
        [
            {
                "account_id": account.id,
                "user_id": uid,
                "role": Role.MEMBER.value,
                "status": MembershipStatus.ACTIVE.value,
                "source": Source.MESSENGER.value,
                "created_at": NOW,
                "updated_at": NOW,
            }
            for uid in ids
        ],
    )
    db.commit()


@pytest.fixture
def bulk_members() -> Callable[..., None]:
    return insert_members


@pytest.fixture
def events() -> Iterator[list[MembershipEvent]]:
    """Every directory event of the test, as the CRM outbox would receive them."""
    seen: list[MembershipEvent] = []

    def listener(_db: Any, event: MembershipEvent) -> None:
        seen.append(event)

    register_membership_listener(listener)
    yield seen
    unregister_membership_listener(listener)
