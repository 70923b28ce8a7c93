"""user session epoch: user.session_epoch

Every signed-in session stores the epoch of its user; raising it ends all of the user's sessions (sign-out,
password/role/licence/active change, "sign out everywhere"). Existing users start at 1, so the session cookies
issued before this upgrade (which carry no epoch, read as 0) are all refused once: everybody signs in again.

Revision ID: d8f1a3c5e7b9
Revises: c5e7a9b1d3f4
Create Date: 2026-12-10 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd8f1a3c5e7b9'
down_revision = 'c5e7a9b1d3f4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), server_default='0', nullable=False))
    user = sa.table('user', sa.column('session_epoch', sa.Integer()))
    op.execute(user.update().values(session_epoch=1))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('session_epoch')
