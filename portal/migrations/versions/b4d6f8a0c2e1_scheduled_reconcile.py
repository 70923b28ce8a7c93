"""scheduled reconcile: the schedule on sync_settings, each connection's next due time

sync_settings.reconcile_every_hours (0 = Off) and reconcile_hour (UTC) set when the reconcile pass runs (default
every night at 02:00 UTC); connection.reconcile_due_at is when a connection's next one is due (empty: the
dispatcher schedules it at the next slot).

Revision ID: b4d6f8a0c2e1
Revises: a1c3e5f7b9d2
Create Date: 2026-12-06 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'b4d6f8a0c2e1'
down_revision = 'a1c3e5f7b9d2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('sync_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reconcile_every_hours', sa.Integer(), nullable=False, server_default='24'))
        batch_op.add_column(sa.Column('reconcile_hour', sa.Integer(), nullable=False, server_default='2'))

    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reconcile_due_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.drop_column('reconcile_due_at')

    with op.batch_alter_table('sync_settings', schema=None) as batch_op:
        batch_op.drop_column('reconcile_hour')
        batch_op.drop_column('reconcile_every_hours')
