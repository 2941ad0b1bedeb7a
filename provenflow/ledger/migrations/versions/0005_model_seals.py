"""model seals

Revision ID: 0005
Revises: 0004

Model versions recorded before this revision have no seal; loaders refuse them until an admin
has checked each one and run ``provenflow models sign NAME@VERSION``.
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seal", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("seal")
