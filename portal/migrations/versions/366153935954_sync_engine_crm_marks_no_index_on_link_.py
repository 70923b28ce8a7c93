"""sync engine CRM marks, no index on link.updated_at

connection.crm_cursors: the CRM side's mark per actor type (existing connections start without one: their next
run looks at every link once, as before). link.updated_at loses its index: nothing looks links up by it, and
the engine rewrites it for every link it syncs.

Revision ID: 366153935954
Revises: 05ad2eac2802
Create Date: 2026-11-25 21:06:33.599526

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '366153935954'
down_revision = '05ad2eac2802'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.add_column(sa.Column('crm_cursors', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))

    with op.batch_alter_table('link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_link_updated_at'))


def downgrade():
    with op.batch_alter_table('link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_link_updated_at'), ['updated_at'], unique=False)

    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.drop_column('crm_cursors')

