"""Read-side views of the ledger as plain dicts: listing, showing and comparing runs and versions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session, selectinload

from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_run


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def run_dict(run: m.Run, full: bool = False) -> dict:
    out = {
        "id": run.id,
        "kind": run.kind,
        "flow": run.flow,
        "name": run.name,
        "state": run.state,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "metrics": last_metrics(run),
        "parameters": run.parameters,
        "warnings": run.warnings or [],
    }
    if full:
        out.update(
            error=run.error,
            inputs=[_io_dict(io) for io in run.io if io.direction == "input"],
            outputs=[_io_dict(io) for io in run.io if io.direction == "output"],
            code={
                "commit": run.code_commit,
                "dirty": run.code_dirty,
                "diff_hash": run.code_diff_hash,
                "file": run.code_file,
                "file_hash": run.code_file_hash,
            },
            environment={
                "hash": run.environment_hash,
                "python": run.environment.python if run.environment else None,
                "platform": run.environment.platform if run.environment else None,
                "packages": run.environment.packages if run.environment else [],
            },
            user=run.user,
            host=run.host,
            prefect_flow_run_id=run.prefect_flow_run_id,
            prefect_url=run.prefect_url,
            metric_history={k: v for k, v in _metric_history(run).items() if len(v) > 1},
            reproductions=_reproductions(run),
        )
    return out


def _reproductions(run: m.Run) -> list:
    # Imported here: provenflow.modeling.reproduce brings the store and environment capture, which the
    # listings (runs list without the warm runner) need not import.
    from provenflow.modeling.reproduce import reproductions_of

    return reproductions_of(object_session(run), run.id)


def last_metrics(run: m.Run) -> dict[str, float]:
    return {metric.key: metric.value for metric in run.metrics}


def _metric_history(run: m.Run) -> dict[str, list[dict]]:
    history: dict[str, list[dict]] = {}
    for metric in run.metrics:
        history.setdefault(metric.key, []).append({"step": metric.step, "value": metric.value})
    return history


def _io_dict(io: m.RunIO) -> dict:
    return {"kind": io.kind, "name": io.name, "hash": io.hash}


def dataset_dict(ds: m.DatasetVersion, full: bool = False) -> dict:
    out = {
        "ref": ds.ref,
        "name": ds.name,
        "version": ds.version,
        "hash": ds.hash,
        "rows": ds.rows,
        "columns": ds.columns,
        "size": ds.size,
        "created_at": _iso(ds.created_at),
        "run_id": ds.run_id,
    }
    if full:
        out.update(uri=ds.uri, format=ds.format, source=ds.source, schema=ds.schema, profile=ds.profile)
    return out


def model_dict(mv: m.ModelVersion, full: bool = False) -> dict:
    out = {
        "ref": mv.ref,
        "name": mv.name,
        "version": mv.version,
        "hash": mv.hash,
        "estimator": mv.estimator,
        "task": mv.task,
        "metrics": mv.metrics,
        "created_at": _iso(mv.created_at),
        "run_id": mv.run_id,
    }
    if full:
        out.update(uri=mv.uri, format=mv.format, size=mv.size, params=mv.params, signature=mv.signature)
        # Which key sealed it (provenflow.modeling.signing); the seal itself is checked when the model loads.
        out["sealed_by_key"] = mv.seal.split(":")[1] if mv.seal and mv.seal.count(":") == 2 else None
    return out


def list_runs(session: Session, limit: int = 50, kind: str | None = None) -> list[dict]:
    # Metrics in one query for all the runs listed, not one per run.
    query = select(m.Run).options(selectinload(m.Run.metrics)).order_by(m.Run.started_at.desc()).limit(limit)
    if kind:
        query = query.where(m.Run.kind == kind)
    return [run_dict(r) for r in session.scalars(query)]


def list_datasets(session: Session, name: str | None = None) -> list[dict]:
    query = select(m.DatasetVersion).order_by(m.DatasetVersion.name, m.DatasetVersion.created_at.desc())
    if name:
        query = query.where(m.DatasetVersion.name == name)
    return [dataset_dict(d) for d in session.scalars(query)]


def list_models(session: Session, name: str | None = None) -> list[dict]:
    query = select(m.ModelVersion).order_by(m.ModelVersion.name, m.ModelVersion.version.desc())
    if name:
        query = query.where(m.ModelVersion.name == name)
    return [model_dict(v) for v in session.scalars(query)]


def compare_runs(session: Session, run_ids: list[str]) -> dict:
    """Parameters and metrics of several runs side by side (``None`` where a run lacks one)."""
    runs = [resolve_run(session, rid) for rid in run_ids]
    params = sorted({k for r in runs for k in _flat(r.parameters)})
    metrics = sorted({k for r in runs for k in last_metrics(r)})
    flat = [_flat(r.parameters) for r in runs]
    for run, values in zip(runs, flat, strict=True):
        read = [io.name for io in run.io if io.direction == "input" and io.kind == "dataset"]
        if isinstance(values.get("dataset"), str) and len(read) == 1:
            values["dataset"] = read[0]  # the version it read, not the `@latest` it was given
    return {
        "runs": [
            {
                "id": r.id,
                "name": r.name,
                "state": r.state,
                "outputs": [io.name for io in r.io if io.direction == "output"],
            }
            for r in runs
        ],
        "params": {k: [f.get(k) for f in flat] for k in params},
        "metrics": {k: [last_metrics(r).get(k) for r in runs] for k in metrics},
    }


def _flat(params: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def default_suite_of(session: Session, dataset: str) -> tuple[str, str] | None:
    """(hash, run id) of the suite the newest completed data run of DATASET was validated against
    by default (no --suite given, or a new one generated with --suite new): the suite later data runs
    of that name keep to, on any machine."""
    from sqlalchemy import and_, or_

    edges = session.scalars(
        select(m.RunIO)
        .join(m.Run)
        .where(
            # A data run of DATASET, or any run that logged DATASET with its default suite
            # (provenflow.log_dataset names that edge "DATASET:default:WHERE").
            or_(
                and_(m.Run.flow == "data-run", m.Run.name == dataset),
                m.RunIO.name.startswith(f"{dataset}:default:", autoescape=True),
            ),
            m.Run.state == "completed",
            m.RunIO.direction == "input",
            m.RunIO.kind == "suite",
        )
        .order_by(m.Run.ended_at.desc())
    )
    edge = next(
        (e for e in edges if e.run.flow != "data-run" or e.run.parameters.get("suite") in (None, "new")), None
    )
    return (edge.hash, edge.run_id) if edge else None
