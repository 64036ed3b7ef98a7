"""Owners' requests to the vendor's support: a free month of a plan, or a plan for more than 1000 users."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, utcnow
from portal.titled_enums import TitledStrEnum


class RequestStatus(TitledStrEnum):
    """Where a request is: sent, taken by staff, or closed either way with a note to the owner."""

    OPEN = "open", "Отправлена"
    IN_PROGRESS = "in_progress", "В работе"
    DONE = "done", "Выполнена"
    REJECTED = "rejected", "Отклонена"

    @property
    def is_open(self) -> bool:
        return self in (RequestStatus.OPEN, RequestStatus.IN_PROGRESS)


OPEN_STATUSES = (RequestStatus.OPEN.value, RequestStatus.IN_PROGRESS.value)


class RequestKind(TitledStrEnum):
    """What an owner asks support for."""

    TRIAL = "trial", "Пробный месяц"
    LARGE_PLAN = "large_plan", "Более 1000 пользователей"
    OTHER = "other", "Другой вопрос"


class SupportRequest(Base):
    """One request of an account's owner; support works it and closes it with a note the owner sees."""

    __tablename__ = "support_requests"
    __table_args__ = (
        # The queue: open requests, oldest first.
        sa.Index("ix_support_requests_status_created_at", "status", "created_at"),
        # One open trial request per account, even when the owner double-submits or two owners ask at once.
        sa.Index(
            "uq_support_requests_open_trial",
            "account_id",
            unique=True,
            sqlite_where=sa.text("kind = 'trial' AND status IN ('open', 'in_progress')"),
            postgresql_where=sa.text("kind = 'trial' AND status IN ('open', 'in_progress')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    plan_code: Mapped[str | None] = mapped_column(sa.String(64))  # the plan to try (trial requests)
    users_expected: Mapped[int | None] = mapped_column(sa.Integer)  # large-plan requests
    comment: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20), default=RequestStatus.OPEN.value)
    created_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    taken_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    staff_note: Mapped[str | None] = mapped_column(sa.Text)  # shown to the owner once the request is closed

    @property
    def kind_title(self) -> str:
        return RequestKind(self.kind).title

    @property
    def status_title(self) -> str:
        return RequestStatus(self.status).title

    @property
    def is_open(self) -> bool:
        return RequestStatus(self.status).is_open

    def __repr__(self) -> str:
        return f"<SupportRequest {self.id} {self.kind} {self.status} account={self.account_id}>"
