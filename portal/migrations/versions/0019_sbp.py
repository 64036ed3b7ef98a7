"""Notices: a per-topic channel choice (e-mail or SMS), the channel of each notice sent, and over-limit episodes

Revision ID: 0019_sbp
Revises: 0020_steer
Create Date: 2026-11-30 05:10:00
"""

from alembic import op
import sqlalchemy as sa

import portal.db


revision = "0019_sbp"
down_revision = "0020_steer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notices") as batch:
        batch.add_column(sa.Column("channel", sa.String(length=8), nullable=False, server_default="email"))
    op.create_table(
        "notice_channels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("topic", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("account_id", "user_id", "topic"),
    )
    op.create_index("ix_notice_channels_user_id", "notice_channels", ["user_id"])
    op.create_table(
        "limit_episodes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=60), nullable=False, unique=True),
        sa.Column("started_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", portal.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_limit_episodes_account_id", "limit_episodes", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_limit_episodes_account_id", table_name="limit_episodes")
    op.drop_table("limit_episodes")
    op.drop_index("ix_notice_channels_user_id", table_name="notice_channels")
    op.drop_table("notice_channels")
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("channel")
