"""ЭДО outbox, closing documents by e-mail: edo_documents, document_mails; requisites.edo_operator, mail_mode

Revision ID: 0013
Revises: 0014
Create Date: 2026-11-30 01:40:00
"""

from alembic import op
import sqlalchemy as sa
import portal.db


revision = "0013"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edo_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("recipient_id", sa.String(length=100), nullable=False),
        sa.Column("recipient_operator", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=True),
        sa.Column("entity_id", sa.String(length=100), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("resends", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attention_resolved_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "document_id"),
    )
    with op.batch_alter_table("edo_documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_edo_documents_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_edo_documents_status"), ["status"], unique=False)

    op.create_table(
        "document_mails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("to_email", sa.String(length=254), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("document_mails", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_document_mails_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_document_mails_status"), ["status"], unique=False)

    with op.batch_alter_table("requisites", schema=None) as batch_op:
        batch_op.add_column(sa.Column("edo_operator", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("mail_mode", sa.String(length=10), server_default="none", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("requisites", schema=None) as batch_op:
        batch_op.drop_column("mail_mode")
        batch_op.drop_column("edo_operator")
    with op.batch_alter_table("document_mails", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_document_mails_status"))
        batch_op.drop_index(batch_op.f("ix_document_mails_account_id"))
    op.drop_table("document_mails")
    with op.batch_alter_table("edo_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_edo_documents_status"))
        batch_op.drop_index(batch_op.f("ix_edo_documents_account_id"))
    op.drop_table("edo_documents")
