"""runs.code_entry: what a run of the team's own code executed (script, notebook or Prefect flow);
runs.code_seal: the signing key's seal over a run's code identity, which `provenflow reproduce` checks
before it materialises or executes anything; model_versions.seal widened to 256 characters (an Ed25519
seal is 149, an HMAC one was 89)

Revision ID: 0011
Revises: 0010

Runs recorded before this revision have no code seal; `provenflow reproduce` refuses them until an
admin has checked the run's commit and diff and seals it with ``provenflow runs seal RUN``.
"""

from alembic import op
import sqlalchemy as sa


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("code_entry", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("code_seal", sa.String(length=256), nullable=True))
    with op.batch_alter_table("model_versions") as batch:
        batch.alter_column("seal", type_=sa.String(length=256), existing_type=sa.String(length=128))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.alter_column("seal", type_=sa.String(length=128), existing_type=sa.String(length=256))
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("code_seal")
        batch.drop_column("code_entry")
