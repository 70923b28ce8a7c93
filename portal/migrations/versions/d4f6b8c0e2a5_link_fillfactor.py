"""link fillfactor 80 on PostgreSQL: room on each page for the in-place (HOT) updates every sync makes

Issue #19: a sync rewrites the link of every record it merges and writes none of its indexed columns, so
PostgreSQL can update the row on its own page without touching the link's six indexes — when the page has room.
Pages filled to 100 % (the default) leave none. SQLite has no such setting. Existing pages keep their fill until
they are rewritten (VACUUM FULL / pg_repack); new pages get the room at once.

Revision ID: d4f6b8c0e2a5
Revises: a8c0e2f4b6d8
Create Date: 2026-12-06 04:30:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd4f6b8c0e2a5'
down_revision = 'a8c0e2f4b6d8'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE link SET (fillfactor = 80)")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE link RESET (fillfactor)")
