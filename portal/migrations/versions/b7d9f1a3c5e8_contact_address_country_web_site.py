"""contact address, country and web site

SuperOffice's person has a postal address, a country and a web site (the Person pre-mapping of spec §3.5: URL,
POSTALAD1..3, POSTALZIP, POSTALCITY, POSTALCOUNTY, POSTALSTATE, POSTALCOUNTRY); the contact gets them, blank.

Revision ID: b7d9f1a3c5e8
Revises: a9c1e3f5b7d8
Create Date: 2026-12-13 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'b7d9f1a3c5e8'
down_revision = 'a9c1e3f5b7d8'
branch_labels = None
depends_on = None

TEXT_COLUMNS = (("url", 254), ("postal_address1", 120), ("postal_address2", 120), ("postal_address3", 120),
                ("postal_zip", 20), ("postal_city", 80), ("postal_county", 80), ("postal_state", 80))


def upgrade():
    with op.batch_alter_table('contact', schema=None) as batch_op:
        for name, length in TEXT_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('country_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_contact_country_id_list_item'), 'list_item', ['country_id'],
                                    ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_contact_country_id_list_item'), type_='foreignkey')
        batch_op.drop_column('country_id')
        for name, _length in reversed(TEXT_COLUMNS):
            batch_op.drop_column(name)
