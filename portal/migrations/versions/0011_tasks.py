"""task_runs: long work (CRM imports and syncs, statement imports) run by the task queue, with its progress

Revision ID: 0011
Revises: 0013
Create Date: 2026-11-30 01:30:00
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0011"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("created_by_user_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("input_data", sa.LargeBinary(), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result_url", sa.String(length=300), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_task_runs_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"], ["users.id"], name=op.f("fk_task_runs_created_by_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_runs")),
    )
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_runs_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_runs_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_task_runs_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_runs_status"))
        batch_op.drop_index(batch_op.f("ix_task_runs_kind"))
        batch_op.drop_index(batch_op.f("ix_task_runs_account_id"))
    op.drop_table("task_runs")
