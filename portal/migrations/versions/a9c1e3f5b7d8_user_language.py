"""user language: user.language

The culture code (US, NO, GB …) a user reads connector texts in — SuperOffice's multi-language texts
``US:"…";NO:"…"``, picked when shown (portal/services/multilang.py). NULL = from the browser's Accept-Language,
which is what every existing user keeps.

Revision ID: a9c1e3f5b7d8
Revises: f2b3c4d5e6a7
Create Date: 2026-12-12 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a9c1e3f5b7d8'
down_revision = 'f2b3c4d5e6a7'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=2), nullable=True))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('language')
