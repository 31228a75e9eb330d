"""Electronic signatures on decisions: the ``signatures`` table, a cohort decision's ``supersedes``
(a signed decision is never changed, only replaced by a new one) and a trial's
``signatures_required``.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'signatures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('trial_id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=True),
        sa.Column('entity', sa.String(length=40), nullable=False),
        sa.Column('entity_id', sa.Integer(), nullable=False),
        sa.Column('signer', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('meaning', sa.String(length=20), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('signed_at', sa.String(length=40), nullable=False),
        sa.Column('record_hash', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['trial_id'], ['trials.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_signatures_trial_id', 'signatures', ['trial_id'])
    op.create_index('ix_signatures_entity', 'signatures', ['entity', 'entity_id'])
    # nullable or defaulted columns: a plain ADD COLUMN, on SQLite too
    op.add_column('trials', sa.Column('signatures_required', sa.Boolean(), nullable=False, server_default='0'))
    with op.batch_alter_table('cohort_decisions') as batch:
        batch.add_column(sa.Column('supersedes', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_cohort_decisions_supersedes', 'cohort_decisions', ['supersedes'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('cohort_decisions') as batch:
        batch.drop_constraint('fk_cohort_decisions_supersedes', type_='foreignkey')
        batch.drop_column('supersedes')
    op.execute("ALTER TABLE trials DROP COLUMN signatures_required")
    op.drop_index('ix_signatures_entity', table_name='signatures')
    op.drop_index('ix_signatures_trial_id', table_name='signatures')
    op.drop_table('signatures')
