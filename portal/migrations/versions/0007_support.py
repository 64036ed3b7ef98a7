"""support: support requests

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OPEN_TRIAL = "kind = 'trial' AND status IN ('open', 'in_progress')"


def upgrade() -> None:
    op.create_table(
        "support_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("plan_code", sa.String(length=64), nullable=True),
        sa.Column("users_expected", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("taken_by_user_id", sa.Integer(), nullable=True),
        sa.Column("taken_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_user_id", sa.Integer(), nullable=True),
        sa.Column("resolved_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("staff_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_support_requests_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"],
            ["users.id"],
            name=op.f("fk_support_requests_created_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by_user_id"],
            ["users.id"],
            name=op.f("fk_support_requests_resolved_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["taken_by_user_id"],
            ["users.id"],
            name=op.f("fk_support_requests_taken_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_requests")),
    )
    with op.batch_alter_table("support_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_support_requests_account_id"), ["account_id"], unique=False)
        batch_op.create_index("ix_support_requests_status_created_at", ["status", "created_at"], unique=False)
        batch_op.create_index(
            "uq_support_requests_open_trial",
            ["account_id"],
            unique=True,
            sqlite_where=sa.text(OPEN_TRIAL),
            postgresql_where=sa.text(OPEN_TRIAL),
        )


def downgrade() -> None:
    with op.batch_alter_table("support_requests", schema=None) as batch_op:
        batch_op.drop_index("uq_support_requests_open_trial")
        batch_op.drop_index("ix_support_requests_status_created_at")
        batch_op.drop_index(batch_op.f("ix_support_requests_account_id"))
    op.drop_table("support_requests")
