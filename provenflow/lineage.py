"""Lineage: what a dataset, model or run came from (upstream) and what used it (downstream).

The graph is bipartite: runs on one side, versions (datasets, models, files) on the other, joined
by the run_io edges. Upstream of a version is the run that wrote it; upstream of a run are its
inputs. Downstream is the reverse.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenflow.catalog import last_metrics
from provenflow.ledger import models as m
from provenflow.refs import resolve_any

MAX_DEPTH = 12


def _run_node(run: m.Run) -> dict:
    return {
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


def _up_from_version(session: Session, io: m.RunIO, depth: int, seen: set) -> list[dict]:
    """Runs that produced this version (usually one; identical re-runs add more)."""
    if depth > MAX_DEPTH:
        return []
    nodes = []
    for edge in _edges_for(session, io, "output"):
        if edge.run.state != "completed" or ("run", edge.run_id) in seen:
            continue
        seen.add(("run", edge.run_id))
        nodes.append(_up_from_run(session, edge.run, depth + 1, seen))
    return nodes


def _up_from_run(session: Session, run: m.Run, depth: int, seen: set) -> dict:
    node = _run_node(run)
    node["inputs"] = []
    for io in run.io:
        if io.direction != "input":
            continue
        child = _version_node(io)
        if _key(io) not in seen:
            seen.add(_key(io))
            child["produced_by"] = _up_from_version(session, io, depth + 1, seen)
        node["inputs"].append(child)
    return node


def _down_from_version(session: Session, io: m.RunIO, depth: int, seen: set) -> list[dict]:
    """Runs that read this version, with what they wrote."""
    if depth > MAX_DEPTH:
        return []
    nodes = []
    for edge in _edges_for(session, io, "input"):
        if ("run", edge.run_id) in seen:
            continue
        seen.add(("run", edge.run_id))
        nodes.append(_down_from_run(session, edge.run, depth + 1, seen))
    return nodes


def _down_from_run(session: Session, run: m.Run, depth: int, seen: set) -> dict:
    node = _run_node(run)
    node["outputs"] = []
    for io in run.io:
        if io.direction != "output":
            continue
        child = _version_node(io)
        if _key(io) not in seen:
            seen.add(_key(io))
            child["used_by"] = _down_from_version(session, io, depth + 1, seen)
        node["outputs"].append(child)
    return node


def lineage(session: Session, ref: str) -> dict:
    """The upstream and downstream graph of a run id, ``dataset@version`` or ``model@version``."""
    item = resolve_any(session, ref)
    if isinstance(item, m.Run):
        up = _up_from_run(session, item, 0, {("run", item.id)})
        down = _down_from_run(session, item, 0, {("run", item.id)})
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
    return {
        "ref": item.ref,
        "kind": anchor.kind,
        "node": node,
        "upstream": _up_from_version(session, anchor, 0, {_key(anchor)}),
        "downstream": _down_from_version(session, anchor, 0, {_key(anchor)}),
    }
