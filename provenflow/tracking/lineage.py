"""Lineage: what a dataset, model or run came from (upstream) and what used it (downstream).

The graph is bipartite: runs on one side, versions (datasets, models, files) on the other, joined
by the run_io edges. Upstream of a version is the run that wrote it; upstream of a run are its
inputs. Downstream is the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_any
from provenflow.tracking.catalog import last_metrics

MAX_DEPTH = 12


def _run_node(run: m.Run) -> dict:
    from provenflow.modeling.reproduce import reproductions_of

    session = object_session(run)
    return {
        "reproductions": reproductions_of(session, run.id) if session else [],
        "kind": "run",
        "id": run.id,
        "name": run.name,
        "flow": run.flow,
        "state": run.state,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "parameters": run.parameters,
        "metrics": last_metrics(run),
        "code": {
            "commit": run.code_commit,
            "dirty": run.code_dirty,
            "diff_hash": run.code_diff_hash,
            "file": run.code_file,
        },
        "environment": {
            "hash": run.environment_hash,
            "python": run.environment.python if run.environment else None,
            "packages": len(run.environment.packages) if run.environment else 0,
        },
        "prefect_url": run.prefect_url,
    }


def _version_node(io: m.RunIO) -> dict:
    return {"kind": io.kind, "ref": io.name, "hash": io.hash}


def _key(io: m.RunIO) -> tuple:
    return (io.kind, io.dataset_version_id or io.model_version_id or io.hash)


def _edges_for(session: Session, io: m.RunIO, direction: str) -> list[m.RunIO]:
    query = select(m.RunIO).where(m.RunIO.direction == direction).order_by(m.RunIO.id)
    if io.dataset_version_id:
        query = query.where(m.RunIO.dataset_version_id == io.dataset_version_id)
    elif io.model_version_id:
        query = query.where(m.RunIO.model_version_id == io.model_version_id)
    else:
        query = query.where(m.RunIO.kind == io.kind, m.RunIO.hash == io.hash)
    return list(session.scalars(query))


@dataclass(frozen=True)
class _Walk:
    """One direction through the graph: which edges lead from a version to runs, and back."""

    version_edge: str  # edges of a version that lead to the next runs
    run_edge: str  # edges of a run that lead to the next versions
    runs_key: str
    versions_key: str


UPSTREAM = _Walk(version_edge="output", run_edge="input", runs_key="produced_by", versions_key="inputs")
DOWNSTREAM = _Walk(version_edge="input", run_edge="output", runs_key="used_by", versions_key="outputs")


def _runs_of(session: Session, io: m.RunIO, walk: _Walk, depth: int, seen: set) -> list[dict]:
    """Upstream: the runs that wrote this version. Downstream: the runs that read it."""
    if depth > MAX_DEPTH:
        return []
    nodes = []
    for edge in _edges_for(session, io, walk.version_edge):
        if ("run", edge.run_id) in seen:
            continue
        seen.add(("run", edge.run_id))
        nodes.append(_walk_run(session, edge.run, walk, depth + 1, seen))
    return nodes


def _walk_run(session: Session, run: m.Run, walk: _Walk, depth: int, seen: set) -> dict:
    node = _run_node(run)
    node[walk.versions_key] = []
    for io in run.io:
        if io.direction != walk.run_edge:
            continue
        child = _version_node(io)
        if _key(io) not in seen:
            seen.add(_key(io))
            child[walk.runs_key] = _runs_of(session, io, walk, depth + 1, seen)
        node[walk.versions_key].append(child)
    return node


def lineage(session: Session, ref: str) -> dict:
    """The upstream and downstream graph of a run id, ``dataset@version`` or ``model@version``."""
    item = resolve_any(session, ref)
    if isinstance(item, m.Run):
        up = _walk_run(session, item, UPSTREAM, 0, {("run", item.id)})
        down = _walk_run(session, item, DOWNSTREAM, 0, {("run", item.id)})
        return {
            "ref": item.id,
            "kind": "run",
            "node": _run_node(item),
            "upstream": up["inputs"],
            "downstream": down["outputs"],
        }
    if isinstance(item, m.DatasetVersion):
        anchor = m.RunIO(kind="dataset", name=item.ref, hash=item.hash, dataset_version_id=item.id)
    else:
        anchor = m.RunIO(kind="model", name=item.ref, hash=item.hash, model_version_id=item.id)
    node = {"kind": anchor.kind, "ref": item.ref, "hash": item.hash}
    if isinstance(item, m.ModelVersion):
        node.update(_releases_and_deployments(session, item.id))
    return {
        "ref": item.ref,
        "kind": anchor.kind,
        "node": node,
        "upstream": _runs_of(session, anchor, UPSTREAM, 0, {_key(anchor)}),
        "downstream": _runs_of(session, anchor, DOWNSTREAM, 0, {_key(anchor)}),
    }


def _releases_and_deployments(session: Session, model_version_id: int) -> dict:
    """Model → image digest → deployments: what of this model reached production, and where."""
    releases = session.scalars(
        select(m.Release).where(m.Release.model_version_id == model_version_id).order_by(m.Release.id)
    ).all()
    deployments = session.scalars(
        select(m.Deployment)
        .where(m.Deployment.model_version_id == model_version_id)
        .order_by(m.Deployment.id)
    ).all()
    return {
        "releases": [
            {"image": r.reference, "digest": r.digest, "runtime": r.runtime, "run_id": r.run_id,
             "at": r.created_at.isoformat()}
            for r in releases
        ],
        "deployments": [
            {"target": d.target, "name": d.name, "endpoint": d.endpoint, "state": d.state,
             "image": d.release.reference if d.release else None, "run_id": d.run_id, "at": d.created_at.isoformat()}
            for d in deployments
        ],
    }  # fmt: skip
