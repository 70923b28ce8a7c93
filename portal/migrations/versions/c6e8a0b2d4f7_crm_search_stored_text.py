"""CRM search index, layout 3 (PostgreSQL): each record's folded search text stored, indexed and tested

Issue #19 (search p95 <= 10 ms at 100,000 companies). A stored generated column ``search_text`` on company,
contact and project holds ``lower()`` of the search expression (a contact's includes its copy of its company's
name); the trigram and 1–2 character indexes are built on it instead of on the expression, and a query tests
``search_text LIKE lower('%term%')`` — what ``expression ILIKE '%term%'`` computes, without folding the expression
again for every row it tests (the GIN matches are always rechecked row by row: 3–4 µs a row with ILIKE). See
portal/services/search_index.py and docs/decisions.md. SQLite is unchanged (its layout 3 is layout 2).

Revision ID: c6e8a0b2d4f7
Revises: d4f6b8c0e2a5
Create Date: 2026-12-08 07:30:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c6e8a0b2d4f7'
down_revision = 'd4f6b8c0e2a5'
branch_labels = None
depends_on = None


def _columns():
    # the columns searched as of this revision (the built-in ones and the six user-defined text slots)
    from portal.services import search_index

    return {crm_type: (*base, *(f"udf_text_{n}" for n in range(1, 7)))
            for crm_type, base in search_index.BASE_COLUMNS.items()}


def _rebuild(layout: int) -> None:
    from portal.services import search_index

    if op.get_bind().dialect.name == "postgresql":
        search_index.drop(op.get_bind())
        search_index.create(op.get_bind(), fill=True, columns=_columns(), layout=layout)


def upgrade():
    _rebuild(3)


def downgrade():
    _rebuild(2)
