"""Indexes that serve the long lists page by page (keyset pagination) and support's search by part of a name

Revision ID: 0021_list_indexes
Revises: 0016
Create Date: 2026-11-30 05:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0021_list_indexes"
down_revision = "0016"
branch_labels = None
depends_on = None

# (index, table, columns): each list's order, so a page is one index range from the last row's key.
KEYSET = (
    ("ix_memberships_team_order", "memberships", ["account_id", "status", "role", "name", "id"]),
    ("ix_audit_log_account_id_id", "audit_log", ["account_id", "id"]),
    ("ix_audit_log_action_id", "audit_log", ["action", "id"]),
    ("ix_audit_log_actor_id", "audit_log", ["actor_user_id", "id"]),
    ("ix_invoices_account_issued", "invoices", ["account_id", "issued_on", "id"]),
    ("ix_upds_account_date", "upds", ["account_id", "doc_date", "id"]),
    ("ix_ukds_account_date", "ukds", ["account_id", "doc_date", "id"]),
    ("ix_advance_invoices_account_date", "advance_invoices", ["account_id", "doc_date", "id"]),
    ("ix_crm_users_account_name_id", "crm_users", ["account_id", "name", "id"]),
    ("ix_crm_sync_entries_run_id_id", "crm_sync_entries", ["run_id", "id"]),
)
# (index, table, column): support's search by any part of a name or a phone, PostgreSQL only (pg_trgm).
TRIGRAM = (
    ("ix_accounts_name_trgm", "accounts", "name"),
    ("ix_requisites_name_trgm", "requisites", "name"),
    ("ix_users_phone_trgm", "users", "phone"),
)


def upgrade() -> None:
    for name, table, columns in KEYSET:
        op.create_index(name, table, columns)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        for name, table, column in TRIGRAM:
            op.create_index(
                name, table, [column], postgresql_using="gin", postgresql_ops={column: "gin_trgm_ops"}
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, table, _column in TRIGRAM:
            op.drop_index(name, table_name=table)
    for name, table, _columns in KEYSET:
        op.drop_index(name, table_name=table)
