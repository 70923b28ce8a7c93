"""CRM search: indexes in each list's order (a page of a search matching thousands walks one)

Issue #19 (search p95 <= 10 ms at 100,000 companies). A search matching more than ``crm.SEARCH_COUNT_CAP``
records shows "more than 1,000" and finds its page by walking the records in list order (company: name,
department, id; contact: last name, first name, id; project: name, id) and testing each against the search index,
instead of sorting every match; see portal/services/search_index.py (``ORDER_INDEXES``) and
``crm._search_page``. With an index on the leading column only, records sharing it (thousands of "Hansen") were
sorted as one block before the first row came out.

Revision ID: f7b9d1e3a5c6
Revises: c1d3e5f7a9b2
Create Date: 2026-12-20 12:00:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'f7b9d1e3a5c6'
down_revision = 'c1d3e5f7a9b2'
branch_labels = None
depends_on = None


def upgrade():
    from portal.services import search_index

    search_index.create_order_indexes(op.get_bind())


def downgrade():
    from portal.services import search_index

    search_index.drop_order_indexes(op.get_bind())
