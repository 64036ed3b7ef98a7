"""Companies paying by card: invoices.paid_by marks the invoice record of a card order that gets a УПД

Revision ID: 0016
Revises: 0017
Create Date: 2026-11-30 02:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0016"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("paid_by", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("paid_by")
