"""CRM checkbox and number fields

Issue #18: CRM checkbox and number fields, so ERP Checkbox, Integer and Double fields can be mapped. The company
gets "No mailings" (checkbox), "Employees" (integer) and "Credit limit" (decimal), the contact "No mailings" and
the project "Completed". A checkbox is never blank: existing rows get False; the numbers start blank.

Revision ID: c3e5a7b9d1f2
Revises: b7d9f1a3c5e8
Create Date: 2026-12-14 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c3e5a7b9d1f2'
down_revision = 'b7d9f1a3c5e8'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('company', schema=None) as batch_op:
        batch_op.add_column(sa.Column('no_mailings', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('employees', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('credit_limit', sa.Double(), nullable=True))
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('no_mailings', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('completed', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_column('completed')
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_column('no_mailings')
    with op.batch_alter_table('company', schema=None) as batch_op:
        batch_op.drop_column('credit_limit')
        batch_op.drop_column('employees')
        batch_op.drop_column('no_mailings')
