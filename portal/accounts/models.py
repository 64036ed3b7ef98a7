"""Accounts (companies), people, their memberships and roles, and sign-in codes."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.phone import format_phone
from portal.db import Base, UTCDateTime, trigram_index, utcnow
from portal.titled_enums import TitledStrEnum


class Role(TitledStrEnum):
    """A person's role in an account: what they may do there (README, «What each person can do»)."""

    OWNER = "owner", "Владелец"
    ACCOUNTANT = "accountant", "Бухгалтер"
    MEMBER = "member", "Сотрудник"


class MembershipStatus(TitledStrEnum):
    """Only an active membership takes a seat."""

    ACTIVE = "active", "Активен"
    DEACTIVATED = "deactivated", "Отключён"
    # The person left the company themselves; only adding them again brings them back.
    LEFT = "left", "Покинул(а) компанию"


class Source(TitledStrEnum):
    """Where a membership came from: the portal itself, the messenger app, or the CRM sync."""

    PORTAL = "portal", "Портал"
    MESSENGER = "messenger", "Мессенджер"
    CRM = "crm", "CRM"


class Account(Base):
    __tablename__ = "accounts"
    # Support finds a company by any part of its name: a trigram index answers `name ILIKE '%…%'` on PostgreSQL.
    __table_args__ = (trigram_index("ix_accounts_name_trgm", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Reported by the messenger backend through the API; the quota comes from the plan.
    storage_used_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")

    memberships: Mapped[list[Membership]] = relationship(back_populates="account", lazy="raise_on_sql")

    def __repr__(self) -> str:
        return f"<Account {self.id} {self.name!r}>"


class User(UserMixin, Base):
    """A person, identified by the phone that signs them in. Name and e-mail are the person's own profile: seeded
    when the person first appears, then changed only by the person. No company reads or writes them."""

    __tablename__ = "users"
    # Support finds a company by a member's phone or its last digits (`phone LIKE '%…%'`).
    __table_args__ = (trigram_index("ix_users_phone_trgm", "phone"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(sa.String(20), unique=True)  # E.164
    name: Mapped[str] = mapped_column(sa.String(200))
    email: Mapped[str | None] = mapped_column(sa.String(254))
    is_staff: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    memberships: Mapped[list[Membership]] = relationship(back_populates="user", lazy="raise_on_sql")

    def __repr__(self) -> str:
        return f"<User {self.id} {self.phone}>"

    @property
    def display_name(self) -> str:
        return self.name or format_phone(self.phone)


class Membership(Base):
    """A person's place in an account; an active one is a seat. It is the company's own record of the person: the
    name and e-mail the company typed (for its team page, documents, receipts and CRM) live here, not on User."""

    __tablename__ = "memberships"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "user_id"),
        # The seat count is an indexed count of active memberships of one account.
        sa.Index("ix_memberships_account_status", "account_id", "status"),
        # The team page's order within a (status, role) group: a page is an index range from the last row's key.
        sa.Index("ix_memberships_team_order", "account_id", "status", "role", "name", "id"),
        # A CRM user is linked to at most one membership of an account, so the CRM sync never duplicates anyone.
        sa.UniqueConstraint("account_id", "crm_user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(sa.String(20), default=Role.MEMBER.value)
    status: Mapped[str] = mapped_column(sa.String(20), default=MembershipStatus.ACTIVE.value)
    source: Mapped[str] = mapped_column(sa.String(20), default=Source.PORTAL.value)
    crm_user_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    name: Mapped[str] = mapped_column(sa.String(200), default="", server_default="")
    email: Mapped[str | None] = mapped_column(sa.String(254))
    # When the person first opened this company; None: someone else added them and the switcher flags it as new.
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    account: Mapped[Account] = relationship(back_populates="memberships", lazy="joined")
    user: Mapped[User] = relationship(back_populates="memberships", lazy="joined")

    @property
    def is_active(self) -> bool:
        return self.status == MembershipStatus.ACTIVE

    @property
    def role_title(self) -> str:
        return Role(self.role).title

    @property
    def status_title(self) -> str:
        return MembershipStatus(self.status).title

    @property
    def is_new(self) -> bool:
        return self.seen_at is None


class SmsCode(Base):
    """A one-time sign-in code; only its HMAC is kept."""

    __tablename__ = "sms_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(sa.String(20), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    # Indexed: the hourly SMS budget counts the codes of the last hour before every send.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A verified code lets its phone register one company; a copy of the cookie cannot register another.
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserSession(Base):
    """One signed-in browser. The cookie carries a random token, the server keeps its hash and whether it ended,
    so signing out ends the session even for a copy of the cookie."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
