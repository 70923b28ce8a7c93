"""alert rules: alert_rule, alert_state

Who is told, and how, when a connection turns failing or recovers, when its open sync issues pass a threshold,
and daily (portal/services/alerts.py); alert_state remembers what each rule last told about each connection.

Revision ID: f2b3c4d5e6a7
Revises: e1a2b3c4d5f6
Create Date: 2026-12-05 18:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'f2b3c4d5e6a7'
down_revision = 'e1a2b3c4d5f6'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'alert_rule',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('connection_id', sa.Integer(), nullable=True),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('recipients', sa.Text(), nullable=False),
        sa.Column('webhook_url', sa.String(length=2000), nullable=False),
        sa.Column('webhook_secret_encrypted', sa.Text(), nullable=True),
        sa.Column('on_state_change', sa.Boolean(), nullable=False),
        sa.Column('issue_threshold', sa.Integer(), nullable=True),
        sa.Column('daily_digest', sa.Boolean(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('last_digest_on', sa.Date(), nullable=True),
        sa.Column('digest_error', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], name=op.f('fk_alert_rule_connection_id_connection'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_rule')),
    )
    with op.batch_alter_table('alert_rule', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_rule_connection_id'), ['connection_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_rule_updated_at'), ['updated_at'], unique=False)
    op.create_table(
        'alert_state',
        sa.Column('rule_id', sa.Integer(), nullable=False),
        sa.Column('connection_id', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('issues_over', sa.Boolean(), nullable=False),
        sa.Column('changed_at', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], name=op.f('fk_alert_state_connection_id_connection'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['rule_id'], ['alert_rule.id'], name=op.f('fk_alert_state_rule_id_alert_rule'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('rule_id', 'connection_id', name=op.f('pk_alert_state')),
    )


def downgrade():
    op.drop_table('alert_state')
    with op.batch_alter_table('alert_rule', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_rule_updated_at'))
        batch_op.drop_index(batch_op.f('ix_alert_rule_connection_id'))
    op.drop_table('alert_rule')
