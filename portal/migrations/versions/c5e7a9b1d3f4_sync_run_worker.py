"""sync run owner: sync_run.worker

The process that claimed a run ("host:pid/pid-namespace"): a run whose owner is on this host and whose process is
gone is reaped at once instead of after the 5-minute lease (docs/sync-engine.md §2).

Revision ID: c5e7a9b1d3f4
Revises: b4d6f8a0c2e1
Create Date: 2026-12-08 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c5e7a9b1d3f4'
down_revision = 'b4d6f8a0c2e1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('sync_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('worker', sa.String(length=255), nullable=True))


def downgrade():
    with op.batch_alter_table('sync_run', schema=None) as batch_op:
        batch_op.drop_column('worker')
