"""Task runs: one row per piece of long work a person started (an import, a sync), with its progress and outcome."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, utcnow


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class TaskRun(Base):
    """What the page that started the work shows: the counts done of total, the result or what failed.

    The row is the job's identity, so a task that runs twice (a retry, the sweep re-enqueueing a lost one) finds
    it finished and does nothing; the queue's own message carries only the row's id."""

    __tablename__ = "task_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40), index=True)
    # Who may see it: the people of this account (None: staff's own work, such as a statement import).
    account_id: Mapped[int | None] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(16), default=RunStatus.QUEUED.value, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    # An uploaded file the work reads (a bank statement): kept here, so a worker on any server can read it.
    input_data: Mapped[bytes | None] = mapped_column(sa.LargeBinary, deferred=True)
    done: Mapped[int] = mapped_column(sa.Integer, default=0)
    total: Mapped[int | None] = mapped_column(sa.Integer)
    message: Mapped[str | None] = mapped_column(sa.Text)  # the result, in Russian, for the page
    error: Mapped[str | None] = mapped_column(sa.Text)  # what failed, in Russian
    result_url: Mapped[str | None] = mapped_column(sa.String(300))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Refreshed while the work runs; a running row not heard of for a while belonged to a worker that died.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def finished(self) -> bool:
        return self.status in (RunStatus.DONE.value, RunStatus.FAILED.value)

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return max(0, min(100, self.done * 100 // self.total))
