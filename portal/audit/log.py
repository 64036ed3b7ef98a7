"""The append-only audit log's record: who changed what, when, from what to what, and why; and how one is written."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict, Unpack

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal.db import Base, UTCDateTime, utcnow


class AuditLog(Base):
    __tablename__ = "audit_log"
    # The log is read newest first (by id) within a filter: each filter's index walks from a page's last key.
    __table_args__ = (
        sa.Index("ix_audit_log_account_id_id", "account_id", "id"),
        sa.Index("ix_audit_log_action_id", "action", "id"),
        sa.Index("ix_audit_log_actor_id", "actor_user_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    actor_label: Mapped[str] = mapped_column(sa.String(200))  # kept even if the user row goes away
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("accounts.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    reason: Mapped[str | None] = mapped_column(sa.Text)


class AuditLogIsAppendOnly(RuntimeError):
    pass


@event.listens_for(AuditLog, "before_update")
def _no_update(*_args: Any) -> None:
    raise AuditLogIsAppendOnly("audit records are never changed")


@event.listens_for(AuditLog, "before_delete")
def _no_delete(*_args: Any) -> None:
    raise AuditLogIsAppendOnly("audit records are never deleted")


class AuditFields(TypedDict):
    """What one audit record says: who (a User, or None for the system: billing tick, webhooks), in which account (an
    Account or its id), did what, the state before and after, and why."""

    actor: Any | None
    account: Any | None
    action: str
    before: NotRequired[dict[str, Any] | None]
    after: NotRequired[dict[str, Any] | None]
    reason: NotRequired[str | None]


def record_audit(db: Session, **fields: Unpack[AuditFields]) -> AuditLog:
    """Add an audit record to the caller's transaction (it commits or rolls back with the change itself)."""
    entry = AuditLog(**audit_values(**fields))
    db.add(entry)
    return entry


def audit_values(**fields: Unpack[AuditFields]) -> dict[str, Any]:
    """The columns of one audit record, for a caller that inserts many in one statement (the CRM's first import)."""
    actor, account = fields["actor"], fields["account"]
    if actor is None:
        actor_id, label = None, "система"
    else:
        actor_id, label = actor.id, f"{actor.name} ({actor.phone})"
    account_id = account if isinstance(account, int) or account is None else account.id
    return {
        "actor_user_id": actor_id,
        "actor_label": label,
        "account_id": account_id,
        "action": fields["action"],
        "before": fields.get("before"),
        "after": fields.get("after"),
        "reason": fields.get("reason"),
        "at": utcnow(),
    }
