"""Autopayment: saved payment methods, the owner's consent, and each period's renewal by autopayment

Revision ID: 0018_autopay
Revises: 0021_list_indexes
Create Date: 2026-11-30 05:00:00
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0018_autopay"
down_revision = "0021_list_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autopay_methods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("method_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("removed_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("removed_by_user_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["removed_by_user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("method_id"),
    )
    op.create_index(op.f("ix_autopay_methods_account_id"), "autopay_methods", ["account_id"], unique=False)
    op.create_table(
        "autopay_consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("plan_code", sa.String(length=64), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("terms_version", sa.String(length=32), nullable=False),
        sa.Column("terms_text", sa.Text(), nullable=False),
        sa.Column("given_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("method_id", sa.Integer(), nullable=True),
        sa.Column("activated_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("canceled_by_user_id", sa.Integer(), nullable=True),
        sa.Column("cancel_reason", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["method_id"], ["autopay_methods.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["canceled_by_user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id"),
    )
    op.create_index(op.f("ix_autopay_consents_account_id"), "autopay_consents", ["account_id"], unique=False)
    op.create_table(
        "autopay_renewals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("consent_id", sa.Integer(), nullable=False),
        sa.Column("period_id", sa.Integer(), nullable=False),
        sa.Column("plan_code", sa.String(length=64), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("period_ends_on", sa.Date(), nullable=False),
        sa.Column("charge_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("first_attempt_on", sa.Date(), nullable=True),
        sa.Column("next_attempt_on", sa.Date(), nullable=True),
        sa.Column("last_attempt_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_reason", sa.String(length=64), nullable=True),
        sa.Column("charged", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("from_balance", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("done_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["consent_id"], ["autopay_consents.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["period_id"], ["subscription_periods.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("period_id"),
    )
    op.create_index(op.f("ix_autopay_renewals_account_id"), "autopay_renewals", ["account_id"], unique=False)
    op.create_index(op.f("ix_autopay_renewals_consent_id"), "autopay_renewals", ["consent_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_autopay_renewals_consent_id"), table_name="autopay_renewals")
    op.drop_index(op.f("ix_autopay_renewals_account_id"), table_name="autopay_renewals")
    op.drop_table("autopay_renewals")
    op.drop_index(op.f("ix_autopay_consents_account_id"), table_name="autopay_consents")
    op.drop_table("autopay_consents")
    op.drop_index(op.f("ix_autopay_methods_account_id"), table_name="autopay_methods")
    op.drop_table("autopay_methods")
