"""flows_images: the images of the project that run flow runs (the Kubernetes work pool's), by digest;
runs.trial_key: a sweep's trial key as an indexed column (filled from the parameters of runs recorded before)

Revision ID: 0010
Revises: 0009
"""

from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flows_images",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image", sa.String(length=1024), nullable=False),
        sa.Column("digest", sa.String(length=128), nullable=False),
        sa.Column("reference", sa.String(length=1024), nullable=False),
        sa.Column("base_image", sa.String(length=1024), nullable=True),
        sa.Column("code_commit", sa.String(length=64), nullable=True),
        sa.Column("code_dirty", sa.Boolean(), nullable=True),
        sa.Column("requirements_hash", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_flows_images_created_at", "flows_images", ["created_at"])

    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("trial_key", sa.String(length=64), nullable=True))
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("parameters", sa.JSON),
                    sa.column("trial_key", sa.String))
    connection = op.get_bind()
    keyed = [
        {"run_id": run_id, "key": parameters["trial_key"]}
        for run_id, parameters in connection.execute(sa.select(runs.c.id, runs.c.parameters))
        if isinstance(parameters, dict) and isinstance(parameters.get("trial_key"), str)
    ]
    if keyed:
        connection.execute(
            runs.update().where(runs.c.id == sa.bindparam("run_id")).values(trial_key=sa.bindparam("key")),
            keyed,
        )
    op.create_index("ix_runs_trial_key", "runs", ["trial_key"])


def downgrade() -> None:
    op.drop_index("ix_runs_trial_key", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("trial_key")
    op.drop_index("ix_flows_images_created_at", table_name="flows_images")
    op.drop_table("flows_images")
