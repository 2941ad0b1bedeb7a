"""dataset_versions.fingerprint: a folder's table fingerprint as an indexed column (with the name),
filled from the profiles of the versions recorded before, so a data-run of a folder finds the earlier
version of the same rows without reading dataset rows

Revision ID: 0012
Revises: 0011
"""

from alembic import op
import sqlalchemy as sa


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_versions") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
    versions = sa.table(
        "dataset_versions", sa.column("id", sa.Integer), sa.column("profile", sa.JSON),
        sa.column("fingerprint", sa.String),
    )  # fmt: skip
    connection = op.get_bind()
    found = [
        {"version_id": version_id, "fingerprint": profile["fingerprint"]}
        for version_id, profile in connection.execute(sa.select(versions.c.id, versions.c.profile))
        if isinstance(profile, dict) and isinstance(profile.get("fingerprint"), str)
    ]
    if found:
        connection.execute(
            versions.update()
            .where(versions.c.id == sa.bindparam("version_id"))
            .values(fingerprint=sa.bindparam("fingerprint")),
            found,
        )
    op.create_index("ix_dataset_versions_name_fingerprint", "dataset_versions", ["name", "fingerprint"])


def downgrade() -> None:
    op.drop_index("ix_dataset_versions_name_fingerprint", table_name="dataset_versions")
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("fingerprint")
