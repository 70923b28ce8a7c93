"""CRM search index, layout 2: rowids in list order and 1–2 letter terms (SQLite); short-term and contact indexes
(PostgreSQL)

Issue #19 (search p95 <= 10 ms at 100,000 companies). See portal/services/search_index.py and
portal/services/search_query.py. The index is dropped and built again from the records:

* SQLite: the FTS5 tables' rowids become *sort rowids* (the first characters of the list's leading column above
  the record's id), so the index returns matches in list order group by group and a page no longer walks or sorts
  every match; each search text ends with two U+001F, and an ``fts5vocab`` table per type lists the trigrams, so
  a term of 1–2 characters is looked up as the trigrams that begin with it instead of reading every text.
* PostgreSQL: a GIN index on each search expression's 1- and 2-character substrings (function
  ``portal_search_grams``), and a contact's copy of its company's name (column ``contact.search_company_name``,
  kept by triggers) inside the contact's indexed expression, instead of a test of the company apart. Without the
  right to create functions and triggers the layout-1 indexes are built instead, with a warning.

Revision ID: a8c0e2f4b6d8
Revises: b9d1f3a5c7e0
Create Date: 2026-12-22 12:00:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a8c0e2f4b6d8'
down_revision = 'b9d1f3a5c7e0'
branch_labels = None
depends_on = None


def _columns():
    # the columns searched as of this revision (the built-in ones and the six user-defined text slots)
    from portal.services import search_index

    return {crm_type: (*base, *(f"udf_text_{n}" for n in range(1, 7)))
            for crm_type, base in search_index.BASE_COLUMNS.items()}


def upgrade():
    from portal.services import search_index

    search_index.drop(op.get_bind())
    search_index.create(op.get_bind(), fill=True, columns=_columns(), layout=2)


def downgrade():
    from portal.services import search_index

    search_index.drop(op.get_bind())
    search_index.create(op.get_bind(), fill=True, columns=_columns(), layout=1)
