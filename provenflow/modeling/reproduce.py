"""Reproducing a recorded run and proving the result the same.

The steps: verify every recorded input in the store; materialise the recorded code (the commit in
a temporary git worktree, with the recorded uncommitted diff applied); compare the environment;
re-run the same flow with the same parameters, pinned to the exact input versions, in its own
process inside that worktree; compare the outputs bit for bit and every metric; give a verdict.

    identical   every output hashes the same
    equivalent  different bytes, but the same predictions (or the same table) and metrics; a model of
                the team's own code is compared on its recorded input example and its drift reference
    different   anything else, with the likely causes: data, code, environment, non-determinism
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenflow.digest import Digest
from provenflow.errors import ProvenflowError, StoreError
from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_run
from provenflow.modeling.signing import Key
from provenflow.storage.store import ContentStore
from provenflow.tracking import code_seal
from provenflow.tracking.environment import capture_environment, diff_packages

if TYPE_CHECKING:
    import pandas as pd

FLOWS = ("data-run", "model-run")
RESULT_MARKER = "PROVENFLOW-RESULT "
METRIC_TOLERANCE = 1e-12


class ReproductionError(ProvenflowError):
    pass


@dataclass
class Edge:
    kind: str
    name: str
    hash: str


@dataclass
class RecordedRun:
    """What the ledger says about a run, detached from the session."""

    id: str
    flow: str
    name: str
    parameters: dict
    inputs: list[Edge]
    outputs: list[Edge]
    metrics: dict[str, float]
    code_commit: str | None
    code_diff_hash: str | None
    packages: list[str]
    entry: dict | None = None  # a run of the team's own code: what to execute (provenflow.tracking.entry)

    @property
    def model_output(self) -> Edge | None:
        return next((e for e in self.outputs if e.kind == "model"), None)

    @property
    def dataset_output(self) -> Edge | None:
        return next((e for e in self.outputs if e.kind == "dataset"), None)


def recorded_run(session: Session, run_id: str, key: Key | None = None) -> RecordedRun:
    """The run as recorded; with ``key``, only when its code seal verifies (before anything of its
    recorded code is checked out or executed)."""
    run = resolve_run(session, run_id)
    if run.state != "completed":
        raise ReproductionError(f"run {run.id} ended {run.state}; only completed runs can be reproduced")
    if run.flow not in FLOWS and not run.code_entry:
        raise ReproductionError(
            f"run {run.id} (flow {run.flow!r}) recorded no entry point to execute again: provenflow reproduces "
            f"{' and '.join(FLOWS)} runs, and runs started with provenflow.start() from a script, a notebook or "
            "a Prefect flow inside a git repository"
        )
    if key is not None:
        code_seal.verify(code_seal.CodeIdentity.of(run), run.code_seal, key)
    return RecordedRun(
        id=run.id,
        flow=run.flow,
        name=run.name,
        parameters=dict(run.parameters),
        inputs=[Edge(io.kind, io.name, io.hash) for io in run.io if io.direction == "input"],
        outputs=[Edge(io.kind, io.name, io.hash) for io in run.io if io.direction == "output"],
        metrics={metric.key: metric.value for metric in run.metrics},
        code_commit=run.code_commit,
        code_diff_hash=run.code_diff_hash,
        packages=list(run.environment.packages) if run.environment else [],
        entry=run.code_entry,
    )


def verify_inputs(store: ContentStore, run: RecordedRun) -> None:
    """Every recorded input must still be in the store with its recorded bytes."""
    for edge in run.inputs:
        try:
            store.check(Digest(edge.hash))
        except StoreError as exc:
            raise ReproductionError(
                f"cannot reproduce run {run.id}: its input {edge.kind} {edge.name!r}: {exc}"
            ) from None


# -- code ------------------------------------------------------------------------------------


def _git(args: list[str], cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False)


def materialise_code(repo: Path, run: RecordedRun, store: ContentStore, destination: Path) -> None:
    """The recorded commit checked out at ``destination`` (a git worktree) with the recorded diff applied."""
    if run.code_commit is None:
        raise ReproductionError(
            f"run {run.id} was not recorded in a git repository, so its code cannot be materialised; "
            "reproduce it with the current code instead (--code current)"
        )
    if _git(["cat-file", "-e", f"{run.code_commit}^{{commit}}"], repo).returncode != 0:
        raise ReproductionError(
            f"commit {run.code_commit} of run {run.id} is not in the repository at {repo}; "
            "fetch it (e.g. `git fetch --all`) and try again"
        )
    added = _git(["worktree", "add", "--detach", "--force", str(destination), run.code_commit], repo)
    if added.returncode != 0:
        raise ReproductionError(f"git could not check out {run.code_commit}: {added.stderr.decode().strip()}")
    if run.code_diff_hash:
        diff = store.read_bytes(Digest(run.code_diff_hash))
        applied = _git(["apply", "--binary", "--whitespace=nowarn", "-"], destination, stdin=diff)
        if applied.returncode != 0:
            remove_worktree(repo, destination)
            raise ReproductionError(
                f"the recorded uncommitted changes of run {run.id} do not apply to {run.code_commit}: "
                f"{applied.stderr.decode().strip()}"
            )
    check_entry(run, destination, repo)


def check_entry(run: RecordedRun, destination: Path, repo: Path) -> None:
    """The recorded entry point is there in the materialised code (and a notebook's cells are the ones
    that ran: a notebook's unsaved edits are not in its file)."""
    entry = run.entry
    if not entry:
        return
    path = destination / entry["path"]
    inside = [(destination / p).resolve().is_relative_to(destination.resolve())
              for p in (entry["path"], entry.get("cwd") or ".")]  # fmt: skip
    if not all(inside):
        remove_worktree(repo, destination)
        raise ReproductionError(f"the entry point of run {run.id} names a path outside its recorded code")
    if not path.is_file():
        remove_worktree(repo, destination)
        raise ReproductionError(f"the entry point {entry['path']} of run {run.id} is not in its recorded code")
    if entry["kind"] == "notebook":
        from provenflow.tracking.entry import notebook_cells_hash

        if notebook_cells_hash(path) != entry["cells"]:
            remove_worktree(repo, destination)
            raise ReproductionError(
                f"the notebook {entry['path']} at the recorded commit and diff is not the one run {run.id} "
                "executed (its cells were edited and not saved before the run started); it cannot be reproduced"
            )


def remove_worktree(repo: Path, destination: Path) -> None:
    _git(["worktree", "remove", "--force", str(destination)], repo)
    _git(["worktree", "prune"], repo)


# -- the re-run -------------------------------------------------------------------------------


def rerun_parameters(run: RecordedRun, source_copy: Path | None, suite_copy: Path | None = None) -> dict:
    """The recorded parameters, pinned to the exact recorded inputs, not registering new versions."""
    params = {**run.parameters, "register_version": False}
    if suite_copy is not None:
        params["suite"] = str(suite_copy)
    if run.flow == "model-run":
        dataset = next((e for e in run.inputs if e.kind == "dataset"), None)
        if dataset is None:
            raise ReproductionError(f"run {run.id} recorded no input dataset")
        params["dataset"] = dataset.name
    elif run.parameters.get("query") or run.parameters.get("table"):
        # A SQL source is read again (its Secret block's credentials): the database keeps no copy. The
        # re-run works in a checkout of the code: a relative SQLite path is the project's.
        params["source"] = project_sqlite(params["source"])
    else:
        if source_copy is None:
            raise ReproductionError(f"run {run.id} recorded no source file to re-read")
        params["source"] = str(source_copy)
        params.pop("source_credentials", None)  # the copy is local
    return params


def project_sqlite(source: str) -> str:
    """SOURCE with a relative SQLite file made absolute in the project (the folder holding its
    .provenflow), where the data run read it; any other URL as it is."""
    import sqlalchemy as sa

    from provenflow.settings import get_settings

    try:
        url = sa.engine.make_url(source)
    except sa.exc.ArgumentError:
        return source
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or Path(database).is_absolute():
        return source
    return url.set(database=str(get_settings().home_dir.parent / database)).render_as_string(hide_password=False)


def fetch_source(store: ContentStore, run: RecordedRun, folder: Path) -> Path | None:
    """A data run's raw source, copied out of the store under its original file name (a folder's
    files under their paths relative to it, so partition folders read the same)."""
    edges = [e for e in run.inputs if e.kind == "file"]
    if not edges:
        return None
    from provenflow.data.ingest import listing

    if listing.is_many(str(run.parameters.get("source", ""))):
        root = folder / "source"
        for edge in edges:
            target = root / edge.name
            target.parent.mkdir(parents=True, exist_ok=True)
            store.get_file(Digest(edge.hash), target)
        return root
    return store.get_file(Digest(edges[0].hash), folder / Path(edges[0].name).name)


def fetch_suite(store: ContentStore, run: RecordedRun, folder: Path) -> Path | None:
    """The expectation suite a data run was validated against, copied out of the store."""
    edge = next((e for e in run.inputs if e.kind == "suite"), None)
    if edge is None:
        return None  # recorded before suites were stored: the re-run finds its suite as data-run does
    return store.get_file(Digest(edge.hash), folder / f"suite-{edge.hash[:12]}.json")


def trusted_path() -> str:
    """The folder this provenflow was imported from: the re-run imports provenflow from there first."""
    return str(Path(__file__).resolve().parents[2])  # …/provenflow/modeling/reproduce.py


def replay_command() -> list[str]:
    """The re-run's interpreter, isolated (``-I``: no cwd, no PYTHONPATH, no user site on sys.path), with
    this provenflow imported before anything of the checked-out code is on the path: a ``provenflow``
    folder in the recorded code can never stand in for provenflow itself."""
    boot = (
        f"import sys; sys.path.insert(0, {trusted_path()!r}); import provenflow; "
        "from provenflow.modeling.replay import main; main()"
    )
    return [sys.executable, "-I", "-c", boot]


def replay(flow: str, parameters: dict, cwd: Path, env: dict[str, str], entry: dict | None = None) -> dict:
    """Run the flow (or the recorded entry point) in its own process inside the checked-out code;
    its result as a dict."""
    spec = json.dumps({"flow": flow, "parameters": parameters, "entry": entry, "root": str(cwd),
                       "trusted": trusted_path()})  # fmt: skip
    done = subprocess.run(
        replay_command(), input=spec, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line.removeprefix(RESULT_MARKER))
    detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    what = f"the {flow} flow" if entry is None else f"{entry['kind']} {entry['path']}"
    raise ReproductionError(f"the re-run of {what} failed (exit {done.returncode}): {detail}")


def pins_of(run: RecordedRun) -> dict[str, str]:
    """The dataset versions the run read, by name: what the re-run's ``@latest`` must mean."""
    return {e.name.split("@", 1)[0]: e.name for e in run.inputs if e.kind == "dataset"}


def pick_rerun(original: RecordedRun, run_ids: list[str], names: dict[str, str]) -> str:
    """Of the runs the re-run started, the one that repeats ``original`` (the first of its name)."""
    for run_id in run_ids:
        if names.get(run_id) == original.name:
            return run_id
    raise ReproductionError(
        f"the re-run of run {original.id} started no run named {original.name!r} "
        f"(it started {len(run_ids)}: {', '.join(sorted(set(names.values()))) or 'none'})"
    )


def check_reported_model(again: RecordedRun, result: dict) -> None:
    """The re-run's model as recorded in the ledger must be the one its process reported to us."""
    edge = again.model_output
    reported = (result.get("model") or {}).get("hash")
    if edge is not None and edge.hash != reported:
        raise ReproductionError(
            f"the ledger records the re-run's model as {edge.hash[:12]}, but the re-run reported "
            f"{str(reported)[:12]}; someone changed the ledger during the reproduction. Refusing to load it"
        )


def replay_env(overrides: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    env.update(overrides)
    env.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    return env


# -- comparing --------------------------------------------------------------------------------


@dataclass
class Comparison:
    verdict: str
    output_hash: dict[str, str | None]
    metrics: dict[str, dict]
    env_diff: list[dict]
    code: dict
    causes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _equal(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=METRIC_TOLERANCE, abs_tol=METRIC_TOLERANCE)


def same_predictions(original: object, reproduced: object, features: pd.DataFrame) -> bool:
    """Labels (or values) equal, and class probabilities within 1e-9, on the same rows."""
    import numpy as np

    first, second = np.asarray(original.predict(features)), np.asarray(reproduced.predict(features))
    if first.shape != second.shape:
        return False
    if first.dtype.kind in "fc":
        if not np.allclose(first, second, rtol=0, atol=1e-9):
            return False
    elif not np.array_equal(first, second):
        return False
    if hasattr(original, "predict_proba") and hasattr(reproduced, "predict_proba"):
        return bool(
            np.allclose(
                original.predict_proba(features), reproduced.predict_proba(features), rtol=0, atol=1e-9
            )
        )
    return True


def compare(
    original: RecordedRun,
    rerun: RecordedRun,
    outputs_equivalent: bool,
    code_source: str,
) -> Comparison:
    if original.flow in FLOWS:
        out_kind = "model" if original.flow == "model-run" else "dataset"
        first = next((e.hash for e in original.outputs if e.kind == out_kind), None)
        second = next((e.hash for e in rerun.outputs if e.kind == out_kind), None)
        output_hash: dict = {"original": first, "reproduced": second}
    else:  # the team's own code: every output, by kind and name
        before, after = outputs_by_key(original), outputs_by_key(rerun)
        output_hash = {k: {"original": before.get(k), "reproduced": after.get(k)} for k in sorted(before | after)}
        first = json.dumps(before, sort_keys=True)
        second = json.dumps(after, sort_keys=True)
    # A metric only the reproduction has (a newer provenflow records more, e.g. validated_rows) is
    # shown but is no difference: the original could not have recorded it.
    metrics = {
        key: {"original": original.metrics.get(key), "reproduced": rerun.metrics.get(key),
              "equal": key not in original.metrics or _equal(original.metrics.get(key), rerun.metrics.get(key))}
        for key in sorted(original.metrics.keys() | rerun.metrics.keys())
    }  # fmt: skip
    env_diff = diff_packages(original.packages, rerun.packages or list(capture_environment().packages))
    same_code = original.code_commit is not None and (original.code_commit, original.code_diff_hash) == (
        rerun.code_commit,
        rerun.code_diff_hash,
    )
    code = {
        "source": code_source,
        "same": same_code,
        "original": {"commit": original.code_commit, "diff_hash": original.code_diff_hash},
        "reproduction": {"commit": rerun.code_commit, "diff_hash": rerun.code_diff_hash},
    }
    same_inputs = sorted((e.kind, e.hash) for e in original.inputs) == sorted(
        (e.kind, e.hash) for e in rerun.inputs
    )
    if first is not None and first == second and (original.flow in FLOWS or all(v["equal"] for v in metrics.values())):
        verdict = "identical"
    elif outputs_equivalent and all(v["equal"] for v in metrics.values()):
        verdict = "equivalent"
    else:
        verdict = "different"
    causes: list[str] = []
    notes: list[str] = []
    if verdict != "identical":
        if not same_inputs:
            causes.append("data")
        if not same_code:
            causes.append("code")
        if env_diff:
            causes.append("environment")
        unseeded = original.parameters.get("params", {}).get("random_state", "unset") is None
        if unseeded:
            notes.append("the estimator ran with random_state=None, so each fit draws new random numbers")
        if unseeded or not causes:
            causes.append("non-determinism")
    return Comparison(verdict, output_hash, metrics, env_diff, code, causes, notes)


def outputs_by_key(run: RecordedRun) -> dict[str, str]:
    """``kind:name`` → hash; a dataset's or model's name without its version (a re-run numbers anew)."""
    return {
        f"{e.kind}:{e.name.split('@', 1)[0] if e.kind in ('dataset', 'model') else e.name}": e.hash
        for e in run.outputs
    }


def reproductions_of(session: Session, run_id: str) -> list[dict]:
    rows = session.scalars(
        select(m.Reproduction).where(m.Reproduction.original_run_id == run_id).order_by(m.Reproduction.id)
    )
    return [
        {"run_id": r.run_id, "rerun_id": r.rerun_id, "verdict": r.verdict, "causes": r.causes,
         "code": r.code_source, "at": r.created_at.isoformat()}
        for r in rows
    ]  # fmt: skip


def scratch_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="provenflow-reproduce-"))
