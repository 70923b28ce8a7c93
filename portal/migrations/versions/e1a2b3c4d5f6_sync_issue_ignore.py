"""sync issue ignore: sync_issue_ignore

"Ignore" on an open sync issue (Settings → Sync → Issues): the link, the issue's error text when it was ignored
(its fingerprint: a different error shows the issue again), who and when. One row per link, deleted with it.

Revision ID: e1a2b3c4d5f6
Revises: d8f1a3c5e7b9
Create Date: 2026-12-12 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e1a2b3c4d5f6'
down_revision = "d8f1a3c5e7b9"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'sync_issue_ignore',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('link_id', sa.Integer(), nullable=False),
        sa.Column('fingerprint', sa.Text(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('user_label', sa.String(length=254), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['link_id'], ['link.id'], name=op.f('fk_sync_issue_ignore_link_id_link'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_sync_issue_ignore_user_id_user'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_issue_ignore')),
        sa.UniqueConstraint('link_id', name=op.f('uq_sync_issue_ignore_link_id')),
    )


def downgrade():
    op.drop_table('sync_issue_ignore')
