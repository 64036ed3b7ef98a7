"""Tables of the CRM sync: the account's connection (encrypted tokens), the CRM mirror, the journal and the outbox."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, utcnow


class ConnectionStatus(enum.StrEnum):
    CONNECTED = "connected"
    ERROR = "error"  # connected, but the CRM refuses our tokens or the account is blocked: reconnect or pay
    DISCONNECTED = "disconnected"

    @property
    def title(self) -> str:
        return {"connected": "Подключена", "error": "Ошибка доступа", "disconnected": "Отключена"}[self.value]


class OutboxOperation(enum.StrEnum):
    CREATE_USER = "create_user"
    DEACTIVATE_USER = "deactivate_user"
    ACTIVATE_USER = "activate_user"

    @property
    def title(self) -> str:
        return {
            "create_user": "Создать в CRM",
            "deactivate_user": "Отключить в CRM",
            "activate_user": "Включить в CRM",
        }[self.value]


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"  # kept failing after every retry: the owner (and support) must look
    REFUSED = "refused"  # the CRM (or a missing e-mail) refused it: retrying blindly would not help
    CANCELED = "canceled"  # made pointless by a later change (e.g. the user was removed before being created)

    @property
    def title(self) -> str:
        return {
            "pending": "В очереди",
            "done": "Выполнено",
            "failed": "Не удалось",
            "refused": "Отклонено",
            "canceled": "Отменено",
        }[self.value]


class CrmConnection(Base):
    """One CRM account connected to one portal account; the tokens are encrypted and never leave the server."""

    __tablename__ = "crm_connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), unique=True)
    backend: Mapped[str] = mapped_column(sa.String(20))  # "amocrm" | "emulator"
    base_url: Mapped[str] = mapped_column(sa.String(255))
    subdomain: Mapped[str] = mapped_column(sa.String(100), default="")
    crm_account_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    crm_account_name: Mapped[str] = mapped_column(sa.String(200), default="")
    status: Mapped[str] = mapped_column(sa.String(20), default=ConnectionStatus.CONNECTED.value)
    # Fernet ciphertexts (see portal.seats.crm.tokens); NULL once disconnected.
    access_token_enc: Mapped[str | None] = mapped_column(sa.Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(sa.Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    connected_by_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The first successful sync after connecting imports every active CRM user; later runs apply changes.
    imported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sync_status: Mapped[str | None] = mapped_column(sa.String(20))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def is_connected(self) -> bool:
        return self.status != ConnectionStatus.DISCONNECTED and self.access_token_enc is not None

    @property
    def status_title(self) -> str:
        return ConnectionStatus(self.status).title

    def __repr__(self) -> str:
        # Never the token columns: a repr ends up in logs and tracebacks.
        return f"<CrmConnection account={self.account_id} {self.subdomain!r} {self.status}>"


class CrmUserState(Base):
    """What the last sync saw of one CRM user: lets the next run notice changes (removed, re-enabled, moved)."""

    __tablename__ = "crm_users"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "crm_user_id"),
        # The CRM page's list of users waiting for a phone is read by name from a page's last key.
        sa.Index("ix_crm_users_account_name_id", "account_id", "name", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"))
    crm_user_id: Mapped[int] = mapped_column(sa.BigInteger)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    email: Mapped[str | None] = mapped_column(sa.String(254))
    phone: Mapped[str | None] = mapped_column(sa.String(40))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_free: Mapped[bool] = mapped_column(default=False)
    is_admin: Mapped[bool] = mapped_column(default=False)
    group_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Why a CRM user has no messenger user (None when linked): see sync.PENDING_REASONS.
    pending_reason: Mapped[str | None] = mapped_column(sa.String(20))
    # Set when the user was removed in the CRM and, by the rules, stays active in the messenger.
    removed_in_crm_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CrmSyncRun(Base):
    """One reconciliation run: its outcome and counts; the lines say what changed and why."""

    __tablename__ = "crm_sync_runs"
    __table_args__ = (sa.Index("ix_crm_sync_runs_account_started", "account_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(sa.String(20))  # "manual" | "cron" | "connect"
    actor_user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(20))  # "ok" | "failed"
    first_import: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    crm_users: Mapped[int] = mapped_column(default=0, server_default="0")
    changes: Mapped[int] = mapped_column(default=0, server_default="0")
    counts: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    error: Mapped[str | None] = mapped_column(sa.Text)

    entries: Mapped[list[CrmSyncEntry]] = relationship(
        back_populates="run", lazy="raise_on_sql", order_by="CrmSyncEntry.id", cascade="all, delete-orphan"
    )

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class CrmSyncEntry(Base):
    """One line of a run's journal: what happened to whom, and why (Russian, for the owner)."""

    __tablename__ = "crm_sync_entries"
    # A run's journal is paged in the order it was written, from a page's last id.
    __table_args__ = (sa.Index("ix_crm_sync_entries_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("crm_sync_runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    crm_user_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    membership_id: Mapped[int | None] = mapped_column(sa.ForeignKey("memberships.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(sa.String(200), default="")
    message: Mapped[str] = mapped_column(sa.Text)

    run: Mapped[CrmSyncRun] = relationship(back_populates="entries", lazy="raise_on_sql")


class CrmOutbox(Base):
    """A messenger change the CRM must still learn about; written in the same transaction as the change."""

    __tablename__ = "crm_outbox"
    __table_args__ = (
        # At most one pending operation of a kind per user: a retried form or two servers never queue it twice.
        sa.Index(
            "uq_crm_outbox_pending",
            "membership_id",
            "operation",
            unique=True,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        ),
        # The delivery worker's scan: due pending items, oldest first.
        sa.Index("ix_crm_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    membership_id: Mapped[int] = mapped_column(sa.ForeignKey("memberships.id", ondelete="CASCADE"))
    operation: Mapped[str] = mapped_column(sa.String(20))
    # What the change was about when it was queued (name, e-mail, CRM id); never a password.
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    status: Mapped[str] = mapped_column(sa.String(20), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    crm_user_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def operation_title(self) -> str:
        return OutboxOperation(self.operation).title

    @property
    def status_title(self) -> str:
        return OutboxStatus(self.status).title
