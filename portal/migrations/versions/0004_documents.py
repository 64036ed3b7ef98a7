"""documents: requisites, invoices, UPD

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('document_counters',
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('last_number', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'year', name=op.f('pk_document_counters'))
    )
    op.create_table('requisites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=3), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('inn', sa.String(length=12), nullable=False),
    sa.Column('kpp', sa.String(length=9), nullable=True),
    sa.Column('ogrn', sa.String(length=15), nullable=False),
    sa.Column('address', sa.String(length=500), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('bank_name', sa.String(length=300), nullable=True),
    sa.Column('bik', sa.String(length=9), nullable=True),
    sa.Column('account_number', sa.String(length=20), nullable=True),
    sa.Column('correspondent_account', sa.String(length=20), nullable=True),
    sa.Column('edo_id', sa.String(length=100), nullable=True),
    sa.Column('updated_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_by_user_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_requisites_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['updated_by_user_id'], ['users.id'], name=op.f('fk_requisites_updated_by_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_requisites')),
    sa.UniqueConstraint('account_id', name=op.f('uq_requisites_account_id'))
    )
    op.create_table('statement_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=300), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('encoding', sa.String(length=20), nullable=False),
    sa.Column('imported_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('imported_by_user_id', sa.Integer(), nullable=True),
    sa.Column('documents_total', sa.Integer(), nullable=False),
    sa.Column('incoming', sa.Integer(), nullable=False),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('unmatched', sa.Integer(), nullable=False),
    sa.Column('duplicates', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['imported_by_user_id'], ['users.id'], name=op.f('fk_statement_imports_imported_by_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_statement_imports'))
    )
    with op.batch_alter_table('statement_imports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_statement_imports_file_sha256'), ['file_sha256'], unique=False)
    op.create_table('stored_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('path', sa.String(length=300), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('download_name', sa.String(length=300), nullable=False),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_stored_files_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stored_files')),
    sa.UniqueConstraint('path', name=op.f('uq_stored_files_path'))
    )
    with op.batch_alter_table('stored_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stored_files_account_id'), ['account_id'], unique=False)
    op.create_table('invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('serial', sa.Integer(), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('vat_rate', sa.Integer(), nullable=True),
    sa.Column('vat_amount', sa.BigInteger(), nullable=False),
    sa.Column('line_name', sa.String(length=500), nullable=False),
    sa.Column('buyer', sa.JSON(), nullable=False),
    sa.Column('purpose', sa.String(length=500), nullable=False),
    sa.Column('qr_payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('pdf_file_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_user_id', sa.Integer(), nullable=True),
    sa.Column('paid_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('paid_on', sa.Date(), nullable=True),
    sa.Column('payment_reference', sa.String(length=200), nullable=True),
    sa.Column('canceled_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_invoices_account_id_accounts')),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_invoices_created_by_user_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_invoices_order_id_orders')),
    sa.ForeignKeyConstraint(['pdf_file_id'], ['stored_files.id'], name=op.f('fk_invoices_pdf_file_id_stored_files')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices')),
    sa.UniqueConstraint('number', name=op.f('uq_invoices_number')),
    sa.UniqueConstraint('order_id', name=op.f('uq_invoices_order_id')),
    sa.UniqueConstraint('year', 'serial', name=op.f('uq_invoices_year_serial'))
    )
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoices_account_id'), ['account_id'], unique=False)
    op.create_table('statement_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('dedup_key', sa.String(length=64), nullable=False),
    sa.Column('doc_number', sa.String(length=40), nullable=False),
    sa.Column('doc_date', sa.Date(), nullable=False),
    sa.Column('received_on', sa.Date(), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('payer_name', sa.String(length=500), nullable=False),
    sa.Column('payer_inn', sa.String(length=12), nullable=False),
    sa.Column('payer_account', sa.String(length=20), nullable=False),
    sa.Column('purpose', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('invoice_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_by_user_id', sa.Integer(), nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['import_id'], ['statement_imports.id'], name=op.f('fk_statement_lines_import_id_statement_imports')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_statement_lines_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['resolved_by_user_id'], ['users.id'], name=op.f('fk_statement_lines_resolved_by_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_statement_lines')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_statement_lines_dedup_key'))
    )
    with op.batch_alter_table('statement_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_statement_lines_import_id'), ['import_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_statement_lines_invoice_id'), ['invoice_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_statement_lines_status'), ['status'], unique=False)
    op.create_table('upds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('serial', sa.Integer(), nullable=False),
    sa.Column('doc_date', sa.Date(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('vat_rate', sa.Integer(), nullable=True),
    sa.Column('vat_amount', sa.BigInteger(), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('pdf_file_id', sa.Integer(), nullable=True),
    sa.Column('xml_file_id', sa.Integer(), nullable=True),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('formed_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_upds_account_id_accounts')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_upds_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['pdf_file_id'], ['stored_files.id'], name=op.f('fk_upds_pdf_file_id_stored_files')),
    sa.ForeignKeyConstraint(['xml_file_id'], ['stored_files.id'], name=op.f('fk_upds_xml_file_id_stored_files')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upds')),
    sa.UniqueConstraint('invoice_id', name=op.f('uq_upds_invoice_id')),
    sa.UniqueConstraint('number', name=op.f('uq_upds_number')),
    sa.UniqueConstraint('year', 'serial', name=op.f('uq_upds_year_serial'))
    )
    with op.batch_alter_table('upds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upds_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_upds_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('upds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upds_account_id'))
        batch_op.drop_index(batch_op.f('ix_upds_status'))
    op.drop_table('upds')
    with op.batch_alter_table('statement_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_statement_lines_import_id'))
        batch_op.drop_index(batch_op.f('ix_statement_lines_invoice_id'))
        batch_op.drop_index(batch_op.f('ix_statement_lines_status'))
    op.drop_table('statement_lines')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoices_account_id'))
    op.drop_table('invoices')
    with op.batch_alter_table('stored_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stored_files_account_id'))
    op.drop_table('stored_files')
    op.drop_table('statement_imports')
    op.drop_table('requisites')
    op.drop_table('document_counters')
