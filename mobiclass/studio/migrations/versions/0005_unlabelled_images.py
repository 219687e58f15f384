"""photos without a class: uploaded to be labelled later (the "label these next" queue picks from them)

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images') as batch:
        batch.alter_column('label_id', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM images WHERE label_id IS NULL")
    with op.batch_alter_table('images') as batch:
        batch.alter_column('label_id', existing_type=sa.Integer(), nullable=False)
