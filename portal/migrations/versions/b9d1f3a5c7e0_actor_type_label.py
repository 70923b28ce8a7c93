"""actor type label: actor_type_config.label

The name people see for an ERP actor type on one connection ("Vendor" for the protocol's Supplier), set by an
admin on the actor type's mapping tab (issue #17, "connector-defined labels"). The connector protocol gives actor
types only as constants, so the label is the admin's; NULL = the standard name, which every existing row keeps.
May be multi-language (``US:"Vendor";NO:"Leverandør"``). See portal/services/actor_labels.py.

Revision ID: b9d1f3a5c7e0
Revises: f7b9d1e3a5c6
Create Date: 2026-12-22 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'b9d1f3a5c7e0'
down_revision = 'f7b9d1e3a5c6'
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN (batch mode does not rebuild actor_type_config for it on SQLite).
    with op.batch_alter_table('actor_type_config', schema=None) as batch_op:
        batch_op.add_column(sa.Column('label', sa.String(length=120), nullable=True))


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # Not batch mode: it would rebuild actor_type_config, and dropping the old table (foreign keys on, see
        # portal/database.py) deletes every erp_field row through ON DELETE CASCADE. SQLite >= 3.35 drops a plain
        # column in place.
        op.execute("ALTER TABLE actor_type_config DROP COLUMN label")
    else:
        op.drop_column('actor_type_config', 'label')
