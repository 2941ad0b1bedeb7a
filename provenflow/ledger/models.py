"""The ledger's tables (SQLAlchemy 2 declarative). Schema changes go through Alembic migrations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates


class Base(DeclarativeBase):
    pass


class Environment(Base):
    """A Python environment, stored once per distinct package list."""

    __tablename__ = "environments"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    python: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(256))
    packages: Mapped[list] = mapped_column(JSON)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # data | model | custom | ...
    flow: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256))
    # running (written at start) | completed | failed | crashed (its process died before it ended)
    state: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    # [{"level": "warning" | "notice", "message": ...}]: what the user must hear about (Run.warn)
    warnings: Mapped[list | None] = mapped_column(JSON)
    code_commit: Mapped[str | None] = mapped_column(String(64))
    code_dirty: Mapped[bool | None] = mapped_column(Boolean)
    code_diff_hash: Mapped[str | None] = mapped_column(String(64))
    code_file: Mapped[str | None] = mapped_column(String(1024))  # notebook or script run
    code_file_hash: Mapped[str | None] = mapped_column(String(64))
    # What a run of the team's own code executed, for `provenflow reproduce` (provenflow.tracking.entry):
    # {"kind": "script" | "notebook" | "flow", "path": ..., ...}; None for provenflow's own flows.
    code_entry: Mapped[dict | None] = mapped_column(JSON)
    # The signing key's seal over commit, diff hash, entry, environment and parameters
    # (provenflow.tracking.code_seal); None: recorded before code seals, or without a key.
    code_seal: Mapped[str | None] = mapped_column(String(256))
    environment_hash: Mapped[str | None] = mapped_column(ForeignKey("environments.hash"))
    user: Mapped[str | None] = mapped_column(String(128))
    host: Mapped[str | None] = mapped_column(String(256))
    # The process that runs it: pid and a start identity (pids are reused); cleared once the run
    # has ended both here and in Prefect (provenflow.tracking.crashes).
    pid: Mapped[int | None] = mapped_column(Integer)
    process: Mapped[str | None] = mapped_column(String(64))
    prefect_flow_run_id: Mapped[str | None] = mapped_column(String(36))
    prefect_url: Mapped[str | None] = mapped_column(String(1024))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # parameters["trial_key"] of a sweep's model run (provenflow.modeling.sweep), as a column so a sweep finds the
    # trials already done with an index instead of reading every run's parameters. Set with parameters.
    trial_key: Mapped[str | None] = mapped_column(String(64), index=True)

    environment: Mapped[Environment | None] = relationship()

    @validates("parameters")
    def _keep_trial_key(self, _key: str, parameters: dict | None) -> dict | None:
        key = (parameters or {}).get("trial_key")
        self.trial_key = key if isinstance(key, str) else None
        return parameters
    metrics: Mapped[list[Metric]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="Metric.id"
    )
    io: Mapped[list[RunIO]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="RunIO.id"
    )


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_key", "run_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(256))
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int | None] = mapped_column(Integer)
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    run: Mapped[Run] = relationship(back_populates="metrics")


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), index=True)
    hash: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(12))  # first 12 hex of hash
    uri: Mapped[str] = mapped_column(String(2048))
    format: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int | None] = mapped_column(BigInteger)
    columns: Mapped[int | None] = mapped_column(Integer)
    schema: Mapped[list | None] = mapped_column(JSON)
    profile: Mapped[dict | None] = mapped_column(JSON)
    source: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    # profile["fingerprint"] of a folder's version (ingest.part_summaries.fingerprint: the same rows
    # however cut into files), as a column so a data-run finds the earlier version of the same table
    # with an index instead of reading every version's profile. Set with the profile.
    fingerprint: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("name", "hash", name="uq_dataset_name_hash"),
        Index("ix_dataset_versions_name_fingerprint", "name", "fingerprint"),
    )

    @validates("profile")
    def _keep_fingerprint(self, _key: str, profile: dict | None) -> dict | None:
        found = (profile or {}).get("fingerprint")
        self.fingerprint = found if isinstance(found, str) else None
        return profile

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), index=True)
    version: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64), index=True)
    uri: Mapped[str] = mapped_column(String(2048))
    format: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    estimator: Mapped[str | None] = mapped_column(String(512))
    task: Mapped[str | None] = mapped_column(String(32))
    signature: Mapped[dict | None] = mapped_column(JSON)
    params: Mapped[dict | None] = mapped_column(JSON)
    metrics: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    # Ed25519 signature (or a legacy HMAC) of name, version, hash and format under a key outside the
    # ledger (provenflow.modeling.signing); not to be confused with ``signature``, the model's inputs.
    # None: recorded before seals existed.
    seal: Mapped[str | None] = mapped_column(String(256))

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class RunIO(Base):
    """An edge between a run and what it read (input) or wrote (output)."""

    __tablename__ = "run_io"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    direction: Mapped[str] = mapped_column(String(8))  # input | output
    kind: Mapped[str] = mapped_column(String(16))  # dataset | model | file
    name: Mapped[str] = mapped_column(String(1024))
    hash: Mapped[str] = mapped_column(String(64), index=True)
    dataset_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))

    run: Mapped[Run] = relationship(back_populates="io")
    dataset_version: Mapped[DatasetVersion | None] = relationship()
    model_version: Mapped[ModelVersion | None] = relationship()


class Reproduction(Base):
    """A re-run of a recorded run and the verdict on whether it gave the same result."""

    __tablename__ = "reproductions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    original_run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    # The reproduce flow's own run, and the re-run it launched (None when the re-run never started).
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    rerun_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    verdict: Mapped[str] = mapped_column(String(16))  # identical | equivalent | different
    causes: Mapped[list] = mapped_column(JSON, default=list)
    code_source: Mapped[str] = mapped_column(String(16))  # recorded | current
    report: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ModelAlias(Base):
    """A movable name for one version of a model: ``churn@production``."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("name", "alias", name="uq_model_alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), index=True)
    alias: Mapped[str] = mapped_column(String(128))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    model_version: Mapped[ModelVersion] = relationship()


class AliasEvent(Base):
    """Every move of an alias, and every rejected attempt: who, when, why, from which version."""

    __tablename__ = "alias_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), index=True)
    alias: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))  # assigned | rejected
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(String(256))
    comment: Mapped[str | None] = mapped_column(Text)
    gate: Mapped[dict | None] = mapped_column(JSON)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Release(Base):
    """A container image of a model version, pushed to a registry."""

    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    image: Mapped[str] = mapped_column(String(1024))  # repository:tag
    digest: Mapped[str] = mapped_column(String(128))  # sha256:…
    reference: Mapped[str] = mapped_column(String(1024))  # repository@sha256:… (what deploys use)
    base_image: Mapped[str | None] = mapped_column(String(1024))
    runtime: Mapped[str | None] = mapped_column(String(16))  # onnx | sklearn
    labels: Mapped[dict | None] = mapped_column(JSON)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    model_version: Mapped[ModelVersion] = relationship()


class FlowsImage(Base):
    """An image of the project and its locked dependencies that runs flow runs (the Kubernetes work pool's)."""

    __tablename__ = "flows_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image: Mapped[str] = mapped_column(String(1024))  # repository:tag
    digest: Mapped[str] = mapped_column(String(128))  # sha256:…
    reference: Mapped[str] = mapped_column(String(1024))  # repository@sha256:… (what work pools use)
    base_image: Mapped[str | None] = mapped_column(String(1024))
    code_commit: Mapped[str | None] = mapped_column(String(64))
    code_dirty: Mapped[bool | None] = mapped_column(Boolean)
    # sha256 of the pinned requirements (name==version, one a line) installed in the image.
    requirements_hash: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict | None] = mapped_column(JSON)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Deployment(Base):
    """A model version running somewhere: a Docker container or a Kubernetes Deployment."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id"))
    target: Mapped[str] = mapped_column(String(32))  # docker | kubernetes
    name: Mapped[str] = mapped_column(String(256))
    endpoint: Mapped[str | None] = mapped_column(String(1024))
    state: Mapped[str] = mapped_column(String(32))  # ready | failed | rolled-back | stopped
    details: Mapped[dict | None] = mapped_column(JSON)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    model_version: Mapped[ModelVersion] = relationship()
    release: Mapped[Release | None] = relationship()


class DriftReport(Base):
    """One drift check of a deployed model version: production inputs against its training profile."""

    __tablename__ = "drift_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rows: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32))  # drift | no-drift | not-enough-data
    drift: Mapped[bool] = mapped_column(Boolean)
    features: Mapped[dict] = mapped_column(JSON)
    details: Mapped[dict | None] = mapped_column(JSON)  # prediction drift, skipped segments, policy
    report_hash: Mapped[str | None] = mapped_column(String(64))  # the Evidently HTML report in the store
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    model_version: Mapped[ModelVersion] = relationship()


class QualityReport(Base):
    """One quality check of a deployed model version: its logged predictions joined with the labels
    that arrived later, the realized metric of the window judged, against the training run's."""

    __tablename__ = "quality_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # of the window judged
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    labelled_rows: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32))  # degraded | ok | not enough labels
    degraded: Mapped[bool] = mapped_column(Boolean)
    metric: Mapped[str] = mapped_column(String(32))
    realized: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    training: Mapped[float] = mapped_column(Float)
    windows: Mapped[list] = mapped_column(JSON)  # every window of the check: rows, labelled rows, metrics
    details: Mapped[dict | None] = mapped_column(JSON)  # policy, threshold, reason, estimates
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    model_version: Mapped[ModelVersion] = relationship()
