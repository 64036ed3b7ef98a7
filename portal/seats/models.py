"""Departments of an account's membership and which users belong to them (memberships live in accounts.models)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, utcnow


class Department(Base):
    """A group of users in the messenger; CRM user groups become departments (crm_group_id links them)."""

    __tablename__ = "departments"
    __table_args__ = (
        # One department per CRM group and account, so a sync running twice (or on two servers) never duplicates.
        # NULLs are distinct, so departments made in the portal itself are not affected.
        sa.UniqueConstraint("account_id", "crm_group_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    source: Mapped[str] = mapped_column(sa.String(20), default="portal")
    crm_group_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<Department {self.id} {self.name!r}>"


class MembershipDepartment(Base):
    """A user's place in a department; a CRM user has one group, but the messenger allows several."""

    __tablename__ = "membership_departments"

    membership_id: Mapped[int] = mapped_column(sa.ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True)
    department_id: Mapped[int] = mapped_column(
        sa.ForeignKey("departments.id", ondelete="CASCADE"), primary_key=True, index=True
    )
