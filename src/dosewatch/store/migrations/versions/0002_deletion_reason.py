"""Why a clinical record was marked deleted (records are never removed); records lose their
``site_id`` index (they are always read by patient or id, and an import updates one index less).

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

TABLES = ('observations', 'doses', 'events')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('deleted_reason', sa.Text(), nullable=True))
            batch_op.drop_index(f'ix_{table}_site_id')


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('deleted_reason')
            batch_op.create_index(f'ix_{table}_site_id', ['site_id'], unique=False)
