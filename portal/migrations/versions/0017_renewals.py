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
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("sent_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index(op.f("ix_notices_account_id"), "notices", ["account_id"], unique=False)
    op.create_table(
        "notice_optouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=20), nullable=False),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "user_id", "topic"),
    )
    op.create_index(op.f("ix_notice_optouts_user_id"), "notice_optouts", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_notice_optouts_user_id"), table_name="notice_optouts")
    op.drop_table("notice_optouts")
    op.drop_index(op.f("ix_notices_account_id"), table_name="notices")
    op.drop_table("notices")
    with op.batch_alter_table("subscription_periods", schema=None) as batch_op:
        batch_op.drop_column("grace_ended_at")
        batch_op.drop_column("grace_ends_on")
