"""CRM search index: FTS5 trigram tables and triggers (SQLite), pg_trgm GIN indexes (PostgreSQL)

Issue #19 (speed and scale): company / contact / project search at 100,000 companies without a scan. See
portal/services/search_index.py for the design; this revision creates the index and fills it from the existing
records. On PostgreSQL without the privilege to create the pg_trgm extension the indexes are left out with a
warning (the search then scans, as before); run `flask --app wsgi db downgrade` and `upgrade` again once a
superuser has created the extension.

Revision ID: d2f4a6c8e0b1
Revises: b8e2d4f6a1c3
Create Date: 2026-12-16 12:00:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd2f4a6c8e0b1'
down_revision = 'b8e2d4f6a1c3'
branch_labels = None
depends_on = None


def upgrade():
    from portal.services import search_index

    # the columns searched as of this revision (user-defined text fields joined them in e5a7c9b1d3f4)
    search_index.create(op.get_bind(), fill=True, columns=search_index.BASE_COLUMNS)


def downgrade():
    from portal.services import search_index

    search_index.drop(op.get_bind())
