"""Observations, doses and events name their patient, trial and site by one composite foreign key
to patients (id, trial_id, site_id) instead of three single ones: PostgreSQL checks a foreign key
with a trigger a row, and three of them made bulk imports three times slower; the composite key
also refuses a record whose site or trial differs from its patient's.

Revision ID: 0003
Revises: 0002
"""
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

TABLES = ('observations', 'doses', 'events')
SINGLE = (('trial_id', 'trials'), ('site_id', 'sites'), ('patient_pk', 'patients'))
# SQLite's foreign keys have no names: batch mode names them by this convention to drop them.
CONVENTION = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _single_name(table: str, column: str, referred: str) -> str:
    if op.get_bind().dialect.name == 'postgresql':
        return f'{table}_{column}_fkey'
    return f'fk_{table}_{column}_{referred}'


def upgrade() -> None:
    op.create_index('uq_patients_id_trial_site', 'patients', ['id', 'trial_id', 'site_id'], unique=True)
    for table in TABLES:
        with op.batch_alter_table(table, naming_convention=CONVENTION) as batch_op:
            for column, referred in SINGLE:
                batch_op.drop_constraint(_single_name(table, column, referred), type_='foreignkey')
            batch_op.create_foreign_key(f'fk_{table}_patient', 'patients', ['patient_pk', 'trial_id', 'site_id'],
                                        ['id', 'trial_id', 'site_id'])


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, naming_convention=CONVENTION) as batch_op:
            batch_op.drop_constraint(f'fk_{table}_patient', type_='foreignkey')
            for column, referred in SINGLE:
                batch_op.create_foreign_key(_single_name(table, column, referred), referred, [column], ['id'])
    op.drop_index('uq_patients_id_trial_site', table_name='patients')
