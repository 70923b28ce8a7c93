"""Link.import_run_id: the import run that made the link

Issue #18 (undo of an import): an import run's links are told apart from links made by the ERP tab or by an
earlier import. Links that existed before are left NULL (an import run before this revision cannot be undone).

Revision ID: a4c6e8f0b2d3
Revises: c3e5a7b9d1f2
Create Date: 2026-12-16 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a4c6e8f0b2d3'
down_revision = 'c3e5a7b9d1f2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('link', schema=None) as batch_op:
        batch_op.add_column(sa.Column('import_run_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_link_import_run_id'), ['import_run_id'], unique=False)


def downgrade():
    with op.batch_alter_table('link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_link_import_run_id'))
        batch_op.drop_column('import_run_id')
