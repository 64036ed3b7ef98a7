"""sms_codes.created_at indexed: the hourly SMS budget counts the codes of the last hour on every send

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 00:20:00
"""

from alembic import op


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sms_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_codes_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sms_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_codes_created_at"))
