"""the project's target: the hardware its models are trained for and deployed to

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('projects') as batch:
        batch.add_column(sa.Column('target', sa.String(length=40), nullable=False, server_default='laptop'))


def downgrade() -> None:
    with op.batch_alter_table('projects') as batch:
        batch.drop_column('target')
