"""Recording a run: what went in, what came out, parameters, metrics, code and environment.

When a run starts, a small ``running`` row (host, pid, no outputs) is written in its own
transaction, so a run whose process is killed is found and marked ``crashed`` later
(provenflow.tracking.crashes). Everything else a run records is buffered in memory and written to the
ledger in one transaction when the run ends, after its objects are in the store. A run that
fails is recorded as failed with its error, and the objects it had written for its outputs are
removed again, so a failure leaves neither a dataset/model row nor an orphan object (a killed
run's objects are left to ``provenflow gc``).

    import provenflow as pf

    with pf.start("churn-experiment", parameters={"alpha": 0.1}) as run:
        pf.input("churn@latest")          # a dataset ref, a model ref or a local file
        pf.metric("auc", 0.91)
        pf.output("model.pkl")

Inside a Prefect flow the run takes the flow run's id and UI link, and shows a run card and a
metrics table in the Prefect UI. In a notebook, ``pf.start(...)`` then ``pf.end()``.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import random
import socket
import time
import traceback
import uuid
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from provenflow.digest import Digest
from provenflow.errors import ConfigError, LedgerConflict, ProvenflowError, RefError, SignatureError
from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_dataset, resolve_model
from provenflow.modeling import signing
from provenflow.redact import redact
from provenflow.storage.references import referenced_hashes
from provenflow.storage.store import ContentStore, note_new_objects, stop_noting
from provenflow.tracking import code_seal, crashes, pins, prefect_context
from provenflow.tracking.entry import capture_entry
from provenflow.tracking.environment import EnvironmentState, capture_environment
from provenflow.tracking.source import CodeState, capture_code, current_code_file
from provenflow.tracking.summary import RunSummary  # re-exported: provenflow.tracking.run.RunSummary
from provenflow.workspace import Workspace

_active: ContextVar[Run | None] = ContextVar("provenflow_active_run", default=None)
# How many processes may record a version of one model at the same moment and all succeed.
_COMMIT_ATTEMPTS = 10


@dataclass
class StoredOutput:
    """An output whose object is already in the store; its ledger row is written when the run ends."""

    name: str
    digest: Digest
    size: int
    uri: str
    format: str
    repaired: bool = False  # the store held a damaged object of this content and replaced it


@dataclass
class DatasetOutput(StoredOutput):
    rows: int | None = None
    columns: int | None = None
    schema: list | None = None
    profile: dict | None = None
    source: str | None = None


@dataclass
class ModelOutput(StoredOutput):
    estimator: str | None = None
    task: str | None = None
    signature: dict | None = None
    params: dict | None = None
    metrics: dict | None = None


@dataclass
class _Edge:
    direction: str
    kind: str
    name: str
    hash: str
    dataset_version_id: int | None = None
    model_version_id: int | None = None

    def __post_init__(self) -> None:
        self.name = redact(self.name)  # a source URL may carry a password


@dataclass
class Run:
    workspace: Workspace
    kind: str
    flow: str
    name: str
    id: str
    prefect_flow_run_id: str | None = None
    prefect_url: str | None = None
    parameters: dict = field(default_factory=dict)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    code: CodeState | None = None
    entry: dict | None = None  # what reproduction re-executes (provenflow.tracking.entry)
    environment: EnvironmentState | None = None
    summary: RunSummary | None = None
    _metrics: list[tuple[str, float, int | None, datetime]] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    _edges: list[_Edge] = field(default_factory=list)
    _datasets: list[DatasetOutput] = field(default_factory=list)
    _models: list[ModelOutput] = field(default_factory=list)
    _rows: list[Callable[[Session], None]] = field(default_factory=list)
    _token: Token | None = None
    # Objects this run added to any store; removed again if the run fails.
    _new_objects: list[tuple[ContentStore, Digest]] = field(default_factory=list)
    _noting: Token | None = None
    _opened: bool = False  # its running row is in the ledger

    # -- recording -----------------------------------------------------------------------

    def parameter(self, key: str, value: Any) -> None:
        self.parameters[key] = _jsonable(value)

    def log_parameters(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.parameter(key, value)

    def metric(self, key: str, value: float, step: int | None = None) -> None:
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            raise ProvenflowError(f"metric {key!r} is {value}; record finite numbers only")
        self._metrics.append((key, value, step, datetime.now(UTC)))

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        for key, value in values.items():
            self.metric(key, value, step)

    def warn(self, message: str, level: str = "warning") -> None:
        """Something the user must hear about that does not fail the run (a leaky feature; a column
        left out is a ``notice``); recorded with the run, shown by the CLI and the run card."""
        if level not in ("warning", "notice"):
            raise ProvenflowError(f"warning level {level!r} is not 'warning' or 'notice'")
        self.warnings.append({"level": level, "message": redact(str(message))})

    @property
    def metrics(self) -> dict[str, float]:
        """The last value of each metric."""
        return {key: value for key, value, _, _ in self._metrics}

    def input(self, item: str | os.PathLike | m.DatasetVersion | m.ModelVersion) -> Any:
        """Record something the run read: a dataset/model ref or row, or a local file (hashed and stored)."""
        if isinstance(item, m.DatasetVersion):
            self._edges.append(_Edge("input", "dataset", item.ref, item.hash, dataset_version_id=item.id))
            return item
        if isinstance(item, m.ModelVersion):
            self._edges.append(_Edge("input", "model", item.ref, item.hash, model_version_id=item.id))
            return item
        if isinstance(item, str) and "@" in item and not Path(item).exists():
            with self.workspace.ledger.reader() as session:
                if item.split("@", 1)[0] in _dataset_names(session):
                    try:
                        return self.input(resolve_dataset(session, pins.pinned_dataset(item)))
                    except RefError:  # a model may share the dataset's name: `sales@2` is the model's
                        if not _model_named(session, item.split("@", 1)[0]):
                            raise
                return self.input(resolve_model(session, item))
        path = Path(item)
        stored = self.workspace.store.put_file(path)
        self._edges.append(_Edge("input", "file", str(path), stored.digest.hex))
        return stored.digest

    def output(self, item: str | os.PathLike | DatasetOutput | ModelOutput) -> Any:
        """Record something the run wrote: a local file (stored now) or a dataset/model version."""
        if isinstance(item, DatasetOutput):
            self._datasets.append(item)
            return item
        if isinstance(item, ModelOutput):
            self._models.append(item)
            return item
        path = Path(item)
        stored = self.workspace.store.put_file(path)
        self._edges.append(_Edge("output", "file", str(path), stored.digest.hex))
        return stored.digest

    def output_version(self, item: m.DatasetVersion | m.ModelVersion) -> None:
        """Record an existing dataset or model version as an output of this run (e.g. what a
        retrain run's sub-flows produced), next to the run that wrote it."""
        if isinstance(item, m.DatasetVersion):
            self._edges.append(_Edge("output", "dataset", item.ref, item.hash, dataset_version_id=item.id))
        else:
            self._edges.append(_Edge("output", "model", item.ref, item.hash, model_version_id=item.id))

    def link(self, direction: str, kind: str, name: str, digest: Digest) -> None:
        """Record an input or output by its stored object alone, without a dataset or model version."""
        self._edges.append(_Edge(direction, kind, name, digest.hex))

    def record(self, write: Callable[[Session], None]) -> None:
        """Extra ledger writes (e.g. moving an alias) done in the run's own transaction, only if
        the run succeeds; ``write`` gets the session."""
        self._rows.append(write)

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.end(exc)

    def end(self, error: BaseException | None = None) -> RunSummary:
        """Write the run in one transaction; on error, record it failed and drop its outputs."""
        if self.summary is not None:
            return self.summary
        ended_at = datetime.now(UTC)
        self._stop_noting()
        message = error_message(error) if error is not None else None
        try:
            if error is not None:
                self._drop_outputs()
            try:
                outputs = self._commit(ended_at, message)
            except Exception as exc:
                # The record could not be written: take back what this run stored, and say so in
                # a failed record if even that can be written.
                self._drop_outputs()
                message = f"the run could not be recorded: {error_message(exc)}"
                with contextlib.suppress(Exception):
                    self._commit(ended_at, message)
                self._discard_new_objects()
                raise
            if error is not None:
                self._discard_new_objects()
        finally:
            if self._token is not None:
                _active.reset(self._token)
                self._token = None
        self.summary = self._summarise(ended_at, message, outputs)
        if self.prefect_flow_run_id and prefect_context.current_flow_run():
            self._publish(self.summary)
        return self.summary

    def _open(self) -> None:
        """Write the ``running`` row, in its own transaction, before the run does anything."""
        host, pid, identity = crashes.this_process()
        code = self.code
        with self.workspace.ledger.transaction() as session:
            previous = session.get(m.Run, self.id)
            if previous is not None:  # a retry replaces the record of the attempt before
                session.delete(previous)
                session.flush()
            session.add(
                m.Run(
                    id=self.id, kind=self.kind, flow=self.flow, name=self.name, state="running",
                    parameters=self.parameters, code_commit=code.commit if code else None,
                    code_dirty=code.dirty if code else None, code_diff_hash=code.diff_hash if code else None,
                    code_file=code.file if code else None, code_file_hash=code.file_hash if code else None,
                    code_entry=self.entry, user=_user(), host=host, pid=pid, process=identity,
                    prefect_flow_run_id=self.prefect_flow_run_id, prefect_url=self.prefect_url,
                    started_at=self.started_at,
                )
            )  # fmt: skip
        self._opened = True

    def _stop_noting(self) -> None:
        if self._noting is not None:
            stop_noting(self._noting)
            self._noting = None

    def _drop_outputs(self) -> None:
        """A failed run keeps no outputs, and no edges to objects it alone added."""
        new = {digest.hex for _, digest in self._new_objects}
        self._datasets.clear()
        self._models.clear()
        self._rows.clear()
        self._edges = [e for e in self._edges if e.direction == "input" and e.hash not in new]

    def _discard_new_objects(self) -> None:
        """Remove objects this run added, unless the ledger refers to them (another run may have
        stored the same content at the same time and recorded it)."""
        if not self._new_objects:
            return
        with self.workspace.ledger.reader() as session:
            referenced = referenced_hashes(session, {d.hex for _, d in self._new_objects})
        for store, digest in self._new_objects:
            if digest.hex not in referenced:
                store.delete(digest)

    def _commit(self, ended_at: datetime, error: str | None) -> list[_Edge]:
        # This process produced the models' bytes itself: it seals them, so loaders can tell them
        # from bytes someone put in the store and the ledger by other means. The key is fetched
        # before the transaction: a Secret block is an API call, not to be made holding a write lock.
        # Every run's code identity is sealed too, so `reproduce` executes only what a recording
        # machine ran (provenflow.tracking.code_seal). A machine that holds no private key (a serving
        # pod, a read-only home) still records runs without models, unsealed: they cannot be reproduced.
        key = signing.signing_key(create=True) if self._models and not pins.reproducing() else _sealing_key_if_any()
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                with self.workspace.ledger.transaction() as session:
                    return self._write(session, ended_at, error, key)
            except LedgerConflict:
                # Runs numbered the same model version at once; number again. Each round one of
                # them wins, so N racers need up to N attempts; the jitter spreads the rounds.
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
        raise AssertionError("unreachable")

    def _write(
        self, session, ended_at: datetime, error: str | None, key: signing.SigningKey | None
    ) -> list[_Edge]:
        env = self.environment
        if env is not None and session.get(m.Environment, env.hash) is None:
            session.add(
                m.Environment(
                    hash=env.hash, python=env.python, platform=env.platform, packages=list(env.packages)
                )
            )
        previous = session.get(m.Run, self.id)
        if previous is not None:
            # Its own running row, or the record of a failed attempt a Prefect retry replaces.
            ours = self._opened and previous.state == "running"
            if not ours and previous.state not in ("failed", "crashed"):
                raise ProvenflowError(f"run {self.id} is already recorded as {previous.state}")
            session.delete(previous)
            session.flush()
        code = self.code
        run = m.Run(
            id=self.id,
            kind=self.kind,
            flow=self.flow,
            name=self.name,
            state="failed" if error else "completed",
            error=error,
            parameters=self.parameters,
            warnings=self.warnings or None,
            code_commit=code.commit if code else None,
            code_dirty=code.dirty if code else None,
            code_diff_hash=code.diff_hash if code else None,
            code_file=code.file if code else None,
            code_file_hash=code.file_hash if code else None,
            code_entry=self.entry,
            environment_hash=env.hash if env else None,
            user=_user(),
            host=socket.gethostname(),
            # Kept until a later command has seen that Prefect heard of the end too (crashes.py).
            pid=os.getpid(),
            process=crashes.process_identity(os.getpid()),
            prefect_flow_run_id=self.prefect_flow_run_id,
            prefect_url=self.prefect_url,
            started_at=self.started_at,
            ended_at=ended_at,
        )
        if key is not None and key.can_seal:
            run.code_seal = code_seal.seal(code_seal.CodeIdentity.of(run), key)
        session.add(run)
        session.flush()
        outputs: list[_Edge] = []
        now = datetime.now(UTC)
        if pins.reproducing():
            # A reproduction's re-run registers nothing: a different result must not become a
            # dataset's @latest or a model's next version. Its outputs are edges to their objects,
            # which the reproducer compares with the original's.
            outputs = [_Edge("output", "dataset", f"{ds.name}@{ds.digest.short}", ds.digest.hex) for ds in self._datasets]
            outputs += [_Edge("output", "model", f"{mo.name}@reproduction", mo.digest.hex) for mo in self._models]
            for mo in self._models:
                pins.note_model(mo.digest.hex)
            self._datasets, self._models = [], []
        for ds in self._datasets:
            row = session.scalar(
                select(m.DatasetVersion).where(
                    m.DatasetVersion.name == ds.name, m.DatasetVersion.hash == ds.digest.hex
                )
            )
            if row is None:
                row = m.DatasetVersion(
                    name=ds.name, hash=ds.digest.hex, version=ds.digest.short, uri=ds.uri, format=ds.format,
                    size=ds.size, rows=ds.rows, columns=ds.columns, schema=ds.schema, profile=ds.profile,
                    source=ds.source, created_at=now, run_id=self.id,
                )  # fmt: skip
                session.add(row)
                session.flush()
            outputs.append(_Edge("output", "dataset", row.ref, row.hash, dataset_version_id=row.id))
        for mo in self._models:
            # The same bytes under the same name are the same version (a retrain on unchanged data).
            row = session.scalars(
                select(m.ModelVersion).where(
                    m.ModelVersion.name == mo.name, m.ModelVersion.hash == mo.digest.hex
                )
            ).first()
            if row is None:
                number = (
                    session.scalar(
                        select(func.max(m.ModelVersion.version)).where(m.ModelVersion.name == mo.name)
                    )
                    or 0
                ) + 1
                row = m.ModelVersion(
                    name=mo.name, version=number, hash=mo.digest.hex, uri=mo.uri, format=mo.format, size=mo.size,
                    estimator=mo.estimator, task=mo.task, signature=mo.signature, params=mo.params,
                    metrics=mo.metrics, created_at=now, run_id=self.id,
                )  # fmt: skip
                session.add(row)
                session.flush()
            if row.seal is None:  # new, or recorded before seals: these very bytes came from this fit
                row.seal = signing.seal(signing.ModelIdentity.of(row), key)
            outputs.append(_Edge("output", "model", row.ref, row.hash, model_version_id=row.id))
        for edge in [*self._edges, *outputs]:
            session.add(m.RunIO(run_id=self.id, **edge.__dict__))
        if self._metrics:  # one bulk insert: five times faster than ORM objects for 1,000 metrics
            session.execute(
                insert(m.Metric),
                [
                    {"run_id": self.id, "key": k, "value": v, "step": step, "timestamp": ts}
                    for k, v, step, ts in self._metrics
                ],
            )
        for write in self._rows:
            write(session)
        return outputs

    def _summarise(self, ended_at: datetime, error: str | None, outputs: list[_Edge]) -> RunSummary:
        code, env = self.code, self.environment
        return RunSummary(
            id=self.id,
            kind=self.kind,
            flow=self.flow,
            name=self.name,
            state="failed" if error else "completed",
            error=error,
            parameters=self.parameters,
            metrics=self.metrics,
            warnings=list(self.warnings),
            inputs=[_edge_dict(e) for e in self._edges if e.direction == "input"],
            outputs=[_edge_dict(e) for e in self._edges if e.direction == "output"]
            + [_edge_dict(e) for e in outputs],
            code={
                "commit": code.commit if code else None,
                "dirty": code.dirty if code else None,
                "diff_hash": code.diff_hash if code else None,
                "file": code.file if code else None,
                "file_hash": code.file_hash if code else None,
            },
            environment={"python": env.python, "hash": env.hash, "packages": len(env.packages)}
            if env
            else {},
            prefect_url=self.prefect_url,
            started_at=self.started_at.isoformat(),
            ended_at=ended_at.isoformat(),
        )

    def _publish(self, summary: RunSummary) -> None:
        """The run card (with metric curves and lineage) on the flow run; for a model run, the
        model's leaderboard; for a run that touched models, their model cards."""
        from provenflow.ui import publish

        publish.run_artifacts(self.workspace, summary, [(k, v, step) for k, v, step, _ in self._metrics])


def start(
    name: str,
    *,
    kind: str = "custom",
    flow: str | None = None,
    parameters: dict[str, Any] | None = None,
    workspace: Workspace | None = None,
    code_file: str | os.PathLike | None = None,
) -> Run:
    """Begin a run and make it the active one (for ``provenflow.metric`` & co.)."""
    flow_run = prefect_context.current_flow_run()
    workspace = workspace or Workspace.default()
    _settle_crashed_once(workspace, in_prefect=flow_run is not None)
    run_id = flow_run.id if flow_run and _claim(workspace, flow_run) else str(uuid.uuid4())
    code = capture_code(code_file=Path(code_file) if code_file else None)
    # provenflow's own flows (kind data, model, ...) are replayed from their parameters.
    entry = capture_entry(code.root, Path(code_file) if code_file else current_code_file(), _jsonable) if kind == "custom" else None
    run = Run(
        workspace=workspace,
        kind=kind,
        flow=flow or (flow_run.flow_name if flow_run else None) or "python",
        name=name,
        id=run_id,
        prefect_flow_run_id=flow_run.id if flow_run else None,
        prefect_url=flow_run.ui_url if flow_run else None,
        code=code,
        entry=entry,
        environment=capture_environment(),
    )
    if code.diff:
        stored = workspace.store.put_bytes(code.diff)  # kept so `reproduce` can re-apply it
        assert stored.digest.hex == code.diff_hash
    run.log_parameters(parameters or {})
    run._open()
    run._new_objects, run._noting = note_new_objects()
    run._token = _active.set(run)
    pins.note_started(run.id)
    return run


def beside(run: Run, name: str, *, kind: str, flow: str, parameters: dict[str, Any]) -> Run:
    """A run of the same code, environment and Prefect flow run as RUN, built in memory for
    ``record_all`` (a sweep's trial that was cross-validated in a worker process): not opened, not
    active, its own id."""
    other = Run(
        workspace=run.workspace, kind=kind, flow=flow, name=name, id=str(uuid.uuid4()),
        prefect_flow_run_id=run.prefect_flow_run_id, prefect_url=run.prefect_url, code=run.code,
        environment=run.environment,
    )  # fmt: skip
    other.log_parameters(parameters)
    return other


def record_all(workspace: Workspace, runs: list[tuple[Run, str | None]]) -> None:
    """Write runs that are over (each with its error message, or None) in one transaction, without
    outputs. One transaction where each run of ``start`` takes two: a sweep records its trials
    together once their folds are scored (nothing of a trial happens in this process between its
    start and its end, so there is no running row to leave behind; a crash leaves no trial, and the
    next sweep does them again). No run card each: the sweep's leaderboard shows them together."""
    if not runs:
        return
    if any(run._models or run._datasets for run, _ in runs):
        raise ProvenflowError("record_all writes runs without outputs; end a run with outputs itself")
    key = _sealing_key_if_any()
    ended_at = datetime.now(UTC)
    with workspace.ledger.transaction() as session:
        for run, error in runs:
            run._write(session, ended_at, error, key)
    for run, error in runs:
        run.summary = run._summarise(ended_at, error, [])


def active_run() -> Run:
    run = _active.get()
    if run is None:
        raise ProvenflowError("no active provenflow run; call provenflow.start(...) first")
    return run


# (flow-run id, attempt) pairs whose id a run has taken in this process.
_claimed: set[tuple[str, int]] = set()


def _claim(workspace: Workspace, flow_run: prefect_context.FlowRunInfo) -> bool:
    """The first run of a flow-run attempt takes the flow run's id; later ones get their own.

    A retry (a new attempt) takes it again and replaces the failed record of the attempt before.
    """
    key = (flow_run.id, flow_run.attempt)
    if key in _claimed:
        return False
    with workspace.ledger.reader() as session:
        previous = session.get(m.Run, flow_run.id)
        if previous is not None and previous.state not in ("failed", "crashed"):
            return False
    _claimed.add(key)
    return True


# Ledgers whose dead runs this process has already looked for.
_settled: set[str] = set()


def _settle_crashed_once(workspace: Workspace, in_prefect: bool) -> None:
    """The first run of a process marks runs whose process died as crashed (one indexed query)."""
    if workspace.ledger.url in _settled:
        return
    _settled.add(workspace.ledger.url)
    crashes.settle(workspace.ledger, prefect=in_prefect)


def _sealing_key_if_any() -> signing.Key | None:
    try:  # a reproduction's re-run uses the reproducer's key or none: it never makes one
        key = signing.signing_key(create=not pins.reproducing())
    except (SignatureError, ConfigError):
        return None
    return key if key.can_seal else None


def _dataset_names(session) -> set[str]:
    return set(session.scalars(select(m.DatasetVersion.name).distinct()))


def _model_named(session, name: str) -> bool:
    return session.scalar(select(m.ModelVersion.id).where(m.ModelVersion.name == name).limit(1)) is not None


def _edge_dict(edge: _Edge) -> dict:
    return {"kind": edge.kind, "name": edge.name, "hash": edge.hash}


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def error_message(error: BaseException) -> str:
    """What the ledger keeps of an error: its type and message, credentials masked (a library's
    message may quote a URL with its password)."""
    if isinstance(error, ProvenflowError):
        return redact(f"{type(error).__name__}: {error}")
    return redact("".join(traceback.format_exception_only(type(error), error)).strip())


def _jsonable(value: Any) -> Any:
    """Parameters as JSON the ledger accepts on every backend: no NaN/inf, no credentials in URLs."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _jsonable(value.tolist())
    return repr(value)
