"""What was sent to whom (one row per event and person, its key unique) and what each person chose not to get."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from portal.db import Base, UTCDateTime, utcnow


class Notice(Base):
    """One letter about one event to one person: the unique key makes a second sweep (or a second worker) a no-op."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(sa.String(20))
    # «<event>:<object id>:<user id>», e.g. "ends-14:57:3": the event, what it is about, and for whom.
    key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    # Where it went: the e-mail address, or the phone for an SMS (`channel`).
    email: Mapped[str] = mapped_column(sa.String(254))
    channel: Mapped[str] = mapped_column(sa.String(8), default="email", server_default="email")
    subject: Mapped[str] = mapped_column(sa.String(300))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class _TopicChoice:
    """A person's choice about one topic's notices from one account: at most one row for each."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple[sa.UniqueConstraint]:
        return (sa.UniqueConstraint("account_id", "user_id", "topic"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    topic: Mapped[str] = mapped_column(sa.String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NoticeOptOut(_TopicChoice, Base):
    """A person does not want this topic's letters from this account (no row: they get them)."""

    __tablename__ = "notice_optouts"


class NoticeChannel(_TopicChoice, Base):
    """How a person wants one topic's notices from this account: "sms" (no row: by e-mail)."""

    __tablename__ = "notice_channels"

    channel: Mapped[str] = mapped_column(sa.String(8))


class LimitEpisode(Base):
    """A stretch of time an account was over its seat or storage limit: one notice per episode, a new episode
    only after the account came back within its limits. `key` («seats:<account>:<n>») makes a second sweep's
    insert a no-op."""

    __tablename__ = "limit_episodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(10))  # seats | storage
    number: Mapped[int] = mapped_column(sa.Integer)
    key: Mapped[str] = mapped_column(sa.String(60), unique=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
