"""rate_limit_counter: rate-limit counters shared by every process (the database:// storage)

Issue #19 (several nodes): with several gunicorn workers or hosts on one PostgreSQL, the rate limits count in the
portal's own database (portal/security/limit_storage.py) instead of each process's memory.

Revision ID: c1d3e5f7a9b2
Revises: e5a7c9b1d3f4
Create Date: 2026-12-18 12:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c1d3e5f7a9b2'
down_revision = 'e5a7c9b1d3f4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'rate_limit_counter',
        sa.Column('key', sa.String(length=400), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('expires_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_limit_counter')),
    )
    with op.batch_alter_table('rate_limit_counter', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_limit_counter_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('rate_limit_counter', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_limit_counter_expires_at'))
    op.drop_table('rate_limit_counter')
