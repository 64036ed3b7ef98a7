"""The audit log read newest first, filtered, one keyset page at a time; and the actions its filter offers."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.labels import ACTION_TITLES
from portal.audit.log import AuditLog
from portal.pagination import Key, KeysetPage, keyset_page

SYSTEM_ACTOR = "system"  # the filter value for records made by the portal itself (tick, webhooks)


AUDIT_KEY_TYPES = (int,)


def list_audit(
    db: Session,
    *,
    account_id: int | None = None,
    actor: int | str | None = None,
    action: str | None = None,
    after: Key | None = None,
    before: Key | None = None,
    per_page: int = 50,
) -> KeysetPage[AuditLog]:
    """Audit records newest first, filtered, one page read from an index after (or before) a record's key.

    Only reads: the log is never changed. No count and no OFFSET: the last page of a long log costs what the first
    does (ix_audit_log_account_id_id / ix_audit_log_action_id / ix_audit_log_actor_id serve the filters).
    """
    conditions = []
    if account_id is not None:
        conditions.append(AuditLog.account_id == account_id)
    if actor == SYSTEM_ACTOR:
        conditions.append(AuditLog.actor_user_id.is_(None))
    elif isinstance(actor, int):
        conditions.append(AuditLog.actor_user_id == actor)
    if action:
        if action.endswith("."):
            conditions.append(AuditLog.action.startswith(action, autoescape=True))
        else:
            conditions.append(AuditLog.action == action)
    return keyset_page(
        db,
        sa.select(AuditLog).where(*conditions),
        [AuditLog.id],
        lambda entry: (entry.id,),
        limit=per_page,
        after=after,
        before=before,
    )


def list_audit_actions(selected: str | None = None) -> list[str]:
    """The actions the filter offers: the portal's known list (no DISTINCT over the whole log), and a selected one."""
    known = set(ACTION_TITLES)
    if selected and not selected.endswith("."):
        known.add(selected)
    return sorted(known)
