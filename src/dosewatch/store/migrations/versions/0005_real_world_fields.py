"""What real studies and EHR exports say beyond the first schema: the study id and a stated age of
patients (SDTM STUDYID, DM.AGE when there is no birth date), a finding's comparator (``<40``), its
qualifiers (position, time point, repetition) and where its normal range came from, and a reported
event's codes, the source of its grade and how a partial date was completed.

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COLUMNS = {
    'patients': [('study_id', sa.String(200)), ('age', sa.Float()), ('age_date', sa.Date())],
    'observations': [('comparator', sa.String(2)), ('qualifiers', sa.Text()), ('ref_source', sa.Text())],
    'events': [('codes', sa.Text()), ('grade_source', sa.String(200)), ('imputed', sa.Text())],
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():  # nullable columns: a plain ADD COLUMN, on SQLite too
        for name, type_ in columns:
            op.add_column(table, sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35 has it): copying ``patients`` as a batch would break the records'
    # foreign keys to it.
    for table, columns in COLUMNS.items():
        for name, _ in columns:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
