"""crm: CRM connection, sync journal, outbox

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_connections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("backend", sa.String(length=20), nullable=False),
        sa.Column("base_url", sa.String(length=255), nullable=False),
        sa.Column("subdomain", sa.String(length=100), nullable=False),
        sa.Column("crm_account_id", sa.BigInteger(), nullable=True),
        sa.Column("crm_account_name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("access_token_enc", sa.Text(), nullable=True),
        sa.Column("refresh_token_enc", sa.Text(), nullable=True),
        sa.Column("token_expires_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("connected_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("connected_by_user_id", sa.Integer(), nullable=True),
        sa.Column("disconnected_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("imported_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_sync_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_sync_status", sa.String(length=20), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_crm_connections_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["connected_by_user_id"],
            ["users.id"],
            name=op.f("fk_crm_connections_connected_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_connections")),
        sa.UniqueConstraint("account_id", name=op.f("uq_crm_connections_account_id")),
    )
    op.create_table(
        "crm_sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=True),
        sa.Column("started_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("first_import", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("crm_users", sa.Integer(), server_default="0", nullable=False),
        sa.Column("changes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_crm_sync_runs_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["actor_user_id"], ["users.id"], name=op.f("fk_crm_sync_runs_actor_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_sync_runs")),
    )
    with op.batch_alter_table("crm_sync_runs", schema=None) as batch_op:
        batch_op.create_index("ix_crm_sync_runs_account_started", ["account_id", "started_at"], unique=False)

    op.create_table(
        "crm_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("crm_user_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_free", sa.Boolean(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("group_id", sa.BigInteger(), nullable=True),
        sa.Column("pending_reason", sa.String(length=20), nullable=True),
        sa.Column("removed_in_crm_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("first_seen_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_crm_users_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_users")),
        sa.UniqueConstraint("account_id", "crm_user_id", name=op.f("uq_crm_users_account_id_crm_user_id")),
    )
    op.create_table(
        "crm_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("membership_id", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(length=20), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("crm_user_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_crm_outbox_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["membership_id"],
            ["memberships.id"],
            name=op.f("fk_crm_outbox_membership_id_memberships"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_outbox")),
    )
    with op.batch_alter_table("crm_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_crm_outbox_account_id"), ["account_id"], unique=False)
        batch_op.create_index("ix_crm_outbox_status_next_attempt_at", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "uq_crm_outbox_pending",
            ["membership_id", "operation"],
            unique=True,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )

    op.create_table(
        "crm_sync_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("crm_user_id", sa.BigInteger(), nullable=True),
        sa.Column("membership_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["membership_id"],
            ["memberships.id"],
            name=op.f("fk_crm_sync_entries_membership_id_memberships"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["crm_sync_runs.id"], name=op.f("fk_crm_sync_entries_run_id_crm_sync_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_sync_entries")),
    )
    with op.batch_alter_table("crm_sync_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_crm_sync_entries_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("crm_sync_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crm_sync_entries_run_id"))

    op.drop_table("crm_sync_entries")
    with op.batch_alter_table("crm_outbox", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_crm_outbox_pending",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        )
        batch_op.drop_index("ix_crm_outbox_status_next_attempt_at")
        batch_op.drop_index(batch_op.f("ix_crm_outbox_account_id"))

    op.drop_table("crm_outbox")
    op.drop_table("crm_users")
    with op.batch_alter_table("crm_sync_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_crm_sync_runs_account_started")

    op.drop_table("crm_sync_runs")
    op.drop_table("crm_connections")
