"""people: each company's own record of a person, server-side sessions, single-use registration

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=200), server_default="", nullable=False))
        batch_op.add_column(sa.Column("email", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("seen_at", portal.db.UTCDateTime(timezone=True), nullable=True))
    # Until now every company read the person's one global name and e-mail: each company's record starts as a copy
    # of them, so no name or address is lost, and from here on each company changes only its own copy. Memberships
    # that exist today are the person's known companies, not new ones.
    op.execute(
        "UPDATE memberships SET "
        "name = (SELECT users.name FROM users WHERE users.id = memberships.user_id), "
        "email = (SELECT users.email FROM users WHERE users.id = memberships.user_id), "
        "seen_at = created_at"
    )

    with op.batch_alter_table("sms_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("registered_at", portal.db.UTCDateTime(timezone=True), nullable=True))

    op.create_table(
        "user_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_user_sessions_token_hash")),
    )
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_sessions_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_sessions_user_id"))
    op.drop_table("user_sessions")
    with op.batch_alter_table("sms_codes", schema=None) as batch_op:
        batch_op.drop_column("registered_at")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_column("seen_at")
        batch_op.drop_column("email")
        batch_op.drop_column("name")
