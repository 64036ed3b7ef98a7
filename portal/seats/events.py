"""What changed in an account's membership, told to the listeners (the CRM outbox) inside the same transaction."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from blinker import Signal
from sqlalchemy.orm import Session

from portal.accounts.models import MembershipStatus


class EventKind(enum.StrEnum):
    ADDED = "added"
    DEACTIVATED = "deactivated"
    REACTIVATED = "reactivated"
    ROLE_CHANGED = "role_changed"
    DEPARTMENTS_CHANGED = "departments_changed"
    CRM_LINKED = "crm_linked"


@dataclass(frozen=True)
class MembershipUser:
    """A plain snapshot of one user in one account (for events, the API and listeners)."""

    user_id: int
    membership_id: int
    account_id: int
    phone: str
    name: str
    email: str | None
    role: str
    status: str
    source: str
    crm_user_id: int | None
    department_ids: tuple[int, ...] = ()

    @property
    def is_active(self) -> bool:
        return self.status == MembershipStatus.ACTIVE

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "phone": self.phone,
            "name": self.name,
            "email": self.email,
            "role": self.role,
            "status": self.status,
            "source": self.source,
            "crm_user_id": self.crm_user_id,
            "department_ids": list(self.department_ids),
        }


@dataclass(frozen=True)
class MembershipEvent:
    """What changed, told to every listener inside the transaction that makes the change."""

    kind: EventKind
    account_id: int
    user: MembershipUser  # the state after the change
    source: str  # who made it: "portal" (team page), "messenger" (API), "crm" (the sync)
    actor_user_id: int | None
    at: datetime
    changes: dict[str, Any] = field(default_factory=dict)  # {"role": ["member", "owner"], …}: before, after


MembershipListener = Callable[[Session, MembershipEvent], None]

# The sender (the membership services) must not know its receivers: create_app connects the CRM outbox.
membership_changed = Signal("membership-changed")


def register_membership_listener(fn: MembershipListener) -> MembershipListener:
    """Call `fn(db, event)` after every membership change, in the same transaction (usable as a decorator).

    A listener writes its own rows (e.g. a CRM outbox entry) with `db` and must not commit. If it raises, the whole
    change is undone; raising a MembershipError refuses the change with that message (e.g. «укажите почту»).
    Listeners are told the event's `source`, so the CRM sync's own changes need not be echoed back to the CRM.
    The listener takes the event by the keyword `event`. Connecting the same function twice calls it once.
    """
    membership_changed.connect(fn, weak=False)
    return fn


def unregister_membership_listener(fn: MembershipListener) -> None:
    membership_changed.disconnect(fn)


def emit(db: Session, event: MembershipEvent) -> None:
    membership_changed.send(db, event=event)
