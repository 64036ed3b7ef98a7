"""УКД after a refund of documented rights, and advance invoices (счёт-фактура на аванс) with VAT charged

Revision ID: 0014
Revises: 0010
Create Date: 2026-11-30 02:00:00
"""

import sqlalchemy as sa
from alembic import op

from portal.db import UTCDateTime

revision = "0014"
down_revision = "0010"
branch_labels = None
depends_on = None


def _document_columns() -> list[sa.Column]:
    return [
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("serial", sa.Integer(), nullable=False),
        sa.Column("doc_date", sa.Date(), nullable=False),
    ]


def _file_columns() -> list[sa.Column]:
    return [
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("pdf_file_id", sa.Integer(), sa.ForeignKey("stored_files.id"), nullable=True),
        sa.Column("xml_file_id", sa.Integer(), sa.ForeignKey("stored_files.id"), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("formed_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "ukds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("upd_id", sa.Integer(), sa.ForeignKey("upds.id"), nullable=False),
        sa.Column("order_id", sa.Integer(), sa.ForeignKey("orders.id"), nullable=False),
        *_document_columns(),
        sa.Column("amount_before", sa.BigInteger(), nullable=False),
        sa.Column("amount_after", sa.BigInteger(), nullable=False),
        sa.Column("vat_rate", sa.Integer(), nullable=True),
        *_file_columns(),
        sa.UniqueConstraint("number"),
        sa.UniqueConstraint("year", "serial"),
    )
    for column in ("account_id", "upd_id", "order_id", "status"):
        op.create_index(f"ix_ukds_{column}", "ukds", [column])
    op.create_table(
        "advance_invoices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("invoice_id", sa.Integer(), sa.ForeignKey("invoices.id"), nullable=False),
        *_document_columns(),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("vat_rate", sa.Integer(), nullable=False),
        sa.Column("vat_amount", sa.BigInteger(), nullable=False),
        *_file_columns(),
        sa.UniqueConstraint("number"),
        sa.UniqueConstraint("invoice_id"),
        sa.UniqueConstraint("year", "serial"),
    )
    for column in ("account_id", "status"):
        op.create_index(f"ix_advance_invoices_{column}", "advance_invoices", [column])


def downgrade() -> None:
    op.drop_table("advance_invoices")
    op.drop_table("ukds")
