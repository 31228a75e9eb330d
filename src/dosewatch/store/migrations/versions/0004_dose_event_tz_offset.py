"""Doses and events keep the UTC offset written in the source, as observations do (``tz_offset_min``:
minutes, not applied; empty when none was written).

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

TABLES = ('doses', 'events')


def upgrade() -> None:
    for table in TABLES:  # a nullable column: a plain ADD COLUMN, on SQLite too
        op.add_column(table, sa.Column('tz_offset_min', sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:  # SQLite drops a column by copying the table
            batch_op.drop_column('tz_offset_min')
