"""change log: link_id no longer a foreign key

Every deleted link made the database look through the whole change log for rows whose link_id it had to set
to NULL (there is no index on sync_change.link_id, and one would slow every insert): deleting a connection with
10,000 links and a large log took minutes. The log keeps the id of the link it was written through.

Revision ID: 7d41c0b2e9a3
Revises: 366153935954
Create Date: 2026-11-26 01:10:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '7d41c0b2e9a3'
down_revision = '366153935954'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('sync_change', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_sync_change_link_id_link'), type_='foreignkey')


def downgrade():
    # rows of links deleted meanwhile point nowhere: clear them first, as ON DELETE SET NULL would have
    op.execute("UPDATE sync_change SET link_id = NULL WHERE link_id IS NOT NULL "
               "AND NOT EXISTS (SELECT 1 FROM link WHERE link.id = sync_change.link_id)")
    with op.batch_alter_table('sync_change', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_sync_change_link_id_link'), 'link', ['link_id'], ['id'],
                                    ondelete='SET NULL')
