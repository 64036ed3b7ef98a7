"""Renewals: a grace period after an unpaid renewal, and the notices sent about an account's plan

Revision ID: 0017
Revises: 0011
Create Date: 2026-11-30 02:30:00
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0017"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscription_periods", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grace_ends_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("grace_ended_at", portal.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscription_periods", schema=None) as batch_op:
        batch_op.drop_column("grace_ended_at")
        batch_op.drop_column("grace_ends_on")
