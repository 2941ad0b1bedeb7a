"""run warnings

Revision ID: 0007
Revises: 0006

What a run wants its user to hear about without failing: a feature that predicts the target
almost perfectly (leakage), a class too rare to score, columns left out and rows without a target.
A JSON list of {"level": "warning" | "notice", "message": ...}; runs before this revision have none.
"""

from alembic import op
import sqlalchemy as sa


revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("warnings", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("warnings")
