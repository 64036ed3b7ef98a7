"""Plan changes a person can steer: an upgrade also raises prepaid later periods (order_topups);
a smaller plan for a period months away is scheduled unpaid (orders.opens_on)

Revision ID: 0020_steer
Revises: 0018_autopay
Create Date: 2026-11-30 05:10:00
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0020_steer"
down_revision = "0018_autopay"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("opens_on", sa.Date(), nullable=True))
    op.create_table(
        "order_topups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("order_id", sa.Integer(), sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "period_id", sa.Integer(), sa.ForeignKey("subscription_periods.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "new_period_id", sa.Integer(), sa.ForeignKey("subscription_periods.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("old_plan_code", sa.String(length=64), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("released_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("order_id", "period_id", name="uq_order_topups_order_period"),
    )
    op.create_index("ix_order_topups_order_id", "order_topups", ["order_id"])
    op.create_index("ix_order_topups_period_id", "order_topups", ["period_id"])
    op.create_index("ix_order_topups_new_period_id", "order_topups", ["new_period_id"])


def downgrade() -> None:
    op.drop_table("order_topups")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("opens_on")
