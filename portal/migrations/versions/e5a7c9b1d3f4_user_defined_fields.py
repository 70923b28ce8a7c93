"""User-defined fields: their definitions, and typed slot columns on company, contact and project

Issue #18: an admin defines fields of type text, whole number, decimal, checkbox, date or list on each record type;
each definition claims one slot column of its type (portal/models/user_fields.py, docs/decisions.md). Existing
records start blank: '' for text, False for checkboxes, NULL otherwise. The CRM search index (d2f4a6c8e0b1) is
rebuilt to search the text slots too: dropped first (on SQLite batch mode copies the tables — a foreign key cannot
be added in place — and a contact's search trigger names the company table) and recreated and refilled at the end.

Revision ID: e5a7c9b1d3f4
Revises: d2f4a6c8e0b1
Create Date: 2026-12-17 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e5a7c9b1d3f4'
down_revision = 'd2f4a6c8e0b1'
branch_labels = None
depends_on = None

# the slots as portal/models/user_fields.py declares them, frozen here as of this revision
SLOTS = {"text": 6, "integer": 3, "decimal": 3, "checkbox": 4, "date": 3, "list": 4}
TABLES = ("company", "contact", "project")


def _columns(table: str):
    for field_type, count in SLOTS.items():
        for n in range(1, count + 1):
            name = f"udf_{field_type}_{n}"
            if field_type == "text":
                yield sa.Column(name, sa.String(254), nullable=False, server_default="")
            elif field_type == "checkbox":
                yield sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false())
            elif field_type == "list":
                yield sa.Column(name, sa.Integer(), sa.ForeignKey(
                    "list_item.id", name=f"fk_{table}_{name}_list_item", ondelete="SET NULL"), nullable=True)
            else:
                sql_type = {"integer": sa.Integer(), "decimal": sa.Double(), "date": sa.Date()}[field_type]
                yield sa.Column(name, sql_type, nullable=True)


def _drop_search_index():
    from portal.services import search_index
    search_index.drop(op.get_bind())


def _create_search_index(with_user_fields: bool):
    from portal.services import search_index
    columns = {crm_type: base + ((*(f"udf_text_{n}" for n in range(1, SLOTS["text"] + 1)),) if with_user_fields
                                 else ())
               for crm_type, base in search_index.BASE_COLUMNS.items()}
    search_index.create(op.get_bind(), fill=True, columns=columns)


def upgrade():
    op.create_table(
        'user_field',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('crm_type', sa.String(length=16), nullable=False),
        sa.Column('slot', sa.String(length=32), nullable=False),
        sa.Column('label', sa.String(length=80), nullable=False),
        sa.Column('field_type', sa.String(length=16), nullable=False),
        sa.Column('list_name', sa.String(length=32), nullable=True),
        sa.Column('required', sa.Boolean(), nullable=False),
        sa.Column('show_in_list', sa.Boolean(), nullable=False),
        sa.Column('rank', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('crm_type', 'slot'),
    )
    with op.batch_alter_table('user_field', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_field_crm_type'), ['crm_type'], unique=False)
        batch_op.create_index(batch_op.f('ix_user_field_updated_at'), ['updated_at'], unique=False)
    _drop_search_index()
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in _columns(table):
                batch_op.add_column(column)
    _create_search_index(with_user_fields=True)


def downgrade():
    _drop_search_index()
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in reversed(list(_columns(table))):
                if column.foreign_keys:
                    batch_op.drop_constraint(f"fk_{table}_{column.name}_list_item", type_="foreignkey")
                batch_op.drop_column(column.name)
    with op.batch_alter_table('user_field', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_field_updated_at'))
        batch_op.drop_index(batch_op.f('ix_user_field_crm_type'))
    op.drop_table('user_field')
    _create_search_index(with_user_fields=False)
