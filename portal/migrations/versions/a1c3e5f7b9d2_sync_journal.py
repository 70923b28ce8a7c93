"""sync journal: the ERP writes of a batch, on record before SaveActors is sent

A process killed between a batch's SaveActors and the transaction that applies it used to lose the record of
what it had overwritten in the ERP (the loser of a conflict included). The journal row is written first and
deleted with the batch's transaction; the next run of the connection turns a leftover into change-log rows.

Revision ID: a1c3e5f7b9d2
Revises: 7d41c0b2e9a3
Create Date: 2026-12-05 14:10:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'a1c3e5f7b9d2'
down_revision = '7d41c0b2e9a3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'sync_journal',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=True),
        sa.Column('connection_id', sa.Integer(), nullable=False),
        sa.Column('rows', sa.JSON(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], name=op.f('fk_sync_journal_connection_id_connection'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['run_id'], ['sync_run.id'], name=op.f('fk_sync_journal_run_id_sync_run'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_journal')),
    )
    with op.batch_alter_table('sync_journal', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_journal_connection_id'), ['connection_id'], unique=False)


def downgrade():
    with op.batch_alter_table('sync_journal', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_journal_connection_id'))
    op.drop_table('sync_journal')
