"""seats: directory, departments, storage

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "departments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("crm_group_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_departments_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_departments")),
        sa.UniqueConstraint("account_id", "crm_group_id", name=op.f("uq_departments_account_id_crm_group_id")),
    )
    op.create_table(
        "membership_departments",
        sa.Column("membership_id", sa.Integer(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_membership_departments_department_id_departments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["membership_id"],
            ["memberships.id"],
            name=op.f("fk_membership_departments_membership_id_memberships"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("membership_id", "department_id", name=op.f("pk_membership_departments")),
    )
    with op.batch_alter_table("membership_departments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_membership_departments_department_id"), ["department_id"], unique=False)

    # A CRM user is linked to at most one membership per account (NULLs, i.e. unlinked users, are distinct).
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_memberships_account_id_crm_user_id"), ["account_id", "crm_user_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_memberships_account_id_crm_user_id"), type_="unique")

    with op.batch_alter_table("membership_departments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_membership_departments_department_id"))

    op.drop_table("membership_departments")
    op.drop_table("departments")
