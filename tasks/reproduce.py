from __future__ import annotations

import json
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_API_URL

from provenflow.data import datasets
from provenflow.digest import Digest
from provenflow.errors import ProvenflowError
from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_model
from provenflow.modeling import registry, reproduce, signing, training
from provenflow.modeling.reproduce import RecordedRun
from provenflow.project import project_root
from provenflow.settings import get_settings
from provenflow.tracking.pins import read_noted
from provenflow.workspace import Workspace


@task(cache_policy=NO_CACHE)
def load_recorded_run(workspace: Workspace, run_id: str) -> RecordedRun:
    """The run, only if its code seal verifies: nothing of its code is checked out before."""
    key = signing.signing_key()
    with workspace.ledger.reader() as session:
        return reproduce.recorded_run(session, run_id, key)


@task(cache_policy=NO_CACHE)
def verify_inputs(workspace: Workspace, run: RecordedRun) -> None:
    reproduce.verify_inputs(workspace.store, run)


@task(cache_policy=NO_CACHE)
def checkout_code(workspace: Workspace, run: RecordedRun, code: str, scratch: Path) -> Path:
    """The folder the re-run executes in: the recorded code in a worktree, or the project as it is now."""
    if code == "current":
        return project_root()
    destination = scratch / "code"
    reproduce.materialise_code(project_root(), run, workspace.store, destination)
    return destination


@task(cache_policy=NO_CACHE)
def rerun(workspace: Workspace, run: RecordedRun, checkout: Path, scratch: Path, blocks: dict) -> RecordedRun:
    """The same flow, same parameters, exact inputs, in its own process inside the checkout."""
    if run.entry:
        return rerun_entry(workspace, run, checkout, scratch)
    source = suite = None
    if run.flow == "data-run":
        source = reproduce.fetch_source(workspace.store, run, scratch)
        suite = reproduce.fetch_suite(workspace.store, run, scratch)
    parameters = {**reproduce.rerun_parameters(run, source, suite), **{k: v for k, v in blocks.items() if v}}
    result = reproduce.replay(run.flow, parameters, checkout, reproduce.replay_env(child_env(workspace)))
    with workspace.ledger.reader() as session:
        again = reproduce.recorded_run(session, result["run_id"])
    reproduce.check_reported_model(again, result)
    return again


def child_env(workspace: Workspace) -> dict[str, str]:
    """What a child process that runs recorded code needs: this workspace, this signing key, this Prefect
    server (re-runs here, and retraining by the code that trained a model: tasks.retrain)."""
    settings = get_settings()
    env = {
        "PROVENFLOW_HOME": str(settings.home_dir),
        "PROVENFLOW_LEDGER_URL": workspace.ledger.url,
        "PROVENFLOW_STORE_URL": workspace.store.url,
        "PROVENFLOW_ESTIMATOR_MODULES": ",".join(settings.estimator_modules),
    }
    # The re-run seals its record with this machine's key, never one it would invent.
    signing_config = {
        "PROVENFLOW_SIGNING_KEY": settings.signing_key.get_secret_value() if settings.signing_key else None,
        "PROVENFLOW_SIGNING_KEY_BLOCK": settings.signing_key_block,
        "PROVENFLOW_SIGNING_KEY_FILE": str(settings.signing_key_file) if settings.signing_key_file else None,
        "PROVENFLOW_VERIFY_KEYS": settings.verify_keys,
    }
    env.update({name: value for name, value in signing_config.items() if value})
    api = PREFECT_API_URL.value()
    if api:
        env["PREFECT_API_URL"] = api
    return env


def rerun_entry(workspace: Workspace, run: RecordedRun, checkout: Path, scratch: Path) -> RecordedRun:
    """The team's own script, notebook or flow, with its dataset inputs pinned (provenflow.tracking.pins)."""
    pins, runs = scratch / "pins.json", scratch / "runs.txt"
    pins.write_text(json.dumps(reproduce.pins_of(run)))
    runs.write_text("")
    env = {**child_env(workspace), "PROVENFLOW_REPRODUCTION_PINS": str(pins), "PROVENFLOW_REPRODUCTION_RUNS": str(runs)}
    reproduce.replay(run.flow, run.parameters, checkout, reproduce.replay_env(env), entry=run.entry)
    started, models = read_noted(runs.read_text())
    with workspace.ledger.reader() as session:
        names = {r.id: r.name for r in session.query(m.Run).filter(m.Run.id.in_(started))} if started else {}
        again = reproduce.recorded_run(session, reproduce.pick_rerun(run, started, names))
    for edge in (e for e in again.outputs if e.kind == "model"):
        if edge.hash not in models:  # what compare_results may load must come from the re-run itself
            raise reproduce.ReproductionError(
                f"the ledger records the re-run's model {edge.name} as {edge.hash[:12]}, which the re-run did "
                "not report; someone changed the ledger during the reproduction. Refusing to load it"
            )
    return again


@task(cache_policy=NO_CACHE)
def compare_results(
    workspace: Workspace, original: RecordedRun, again: RecordedRun, code: str
) -> reproduce.Comparison:
    store = workspace.store
    if original.entry:
        return reproduce.compare(original, again, _same_tables(workspace, original, again), code)
    if original.flow == "model-run":
        first, second = original.model_output, again.model_output
        equivalent = False
        if first and second and first.hash != second.hash:
            dataset = next(e for e in original.inputs if e.kind == "dataset")
            frame = datasets.load_table(store, Digest(dataset.hash))
            features = training.features_of(frame, original.parameters["target"])
            with workspace.ledger.reader() as session:
                recorded = training.load_model(store, resolve_model(session, first.name))
            # The re-run's model is not a registered (sealed) version: its hash came from the re-run
            # process itself, checked against the ledger by check_reported_model.
            models = [recorded, training.load_reproduced(store, Digest(second.hash))]
            equivalent = reproduce.same_predictions(models[0], models[1], features)
    else:
        first, second = original.dataset_output, again.dataset_output
        equivalent = bool(first and second) and datasets.load_table(store, Digest(first.hash)).equals(
            datasets.load_table(store, Digest(second.hash))
        )
    return reproduce.compare(original, again, equivalent, code)


def _same_tables(workspace: Workspace, original: RecordedRun, again: RecordedRun) -> bool:
    """Every output of the team's code that differs in bytes is a dataset with the same table, or a
    model with the same predictions on its recorded input example and its drift reference."""
    before, after = reproduce.outputs_by_key(original), reproduce.outputs_by_key(again)
    if before.keys() != after.keys():
        return False
    differing = [k for k in before if before[k] != after[k]]
    tables = ("dataset:", "input-example:")  # a model's example rows compare as a table does
    if any(not k.startswith((*tables, "model:")) for k in differing):
        return False
    for k in [k for k in differing if k.startswith("model:")]:
        if not _same_model_predictions(workspace, original, k.removeprefix("model:"), Digest(after[k])):
            return False
    for k in [k for k in differing if k.startswith(tables)]:
        try:
            first = datasets.load_table(workspace.store, Digest(before[k]))
            second = datasets.load_table(workspace.store, Digest(after[k]))
        except ValueError:  # not a table (a dataset the team stored in its own format): bytes decide
            return False
        if not first.equals(second):
            return False
    return True


def _same_model_predictions(workspace: Workspace, original: RecordedRun, name: str, reproduced: Digest) -> bool:
    """The recorded version of model NAME and the re-run's predict the same on the rows the version
    recorded: its input example, and (up to 1,000 rows of) its drift reference. No rows: not provable."""
    edge = next(e for e in original.outputs if e.kind == "model" and e.name.split("@", 1)[0] == name)
    store = workspace.store
    with workspace.ledger.reader() as session:
        version = resolve_model(session, edge.name)
        recorded = training.load_model(store, version)
        columns = [i["name"] for i in (version.signature or {}).get("inputs", [])]
        frames = []
        example = (version.signature or {}).get("input_example")
        if example:
            frames.append(datasets.load_table(store, Digest(example)))
        try:
            reference = registry.training_reference(session, version)
        except ProvenflowError:  # no training data recorded: the example alone
            reference = None
        if reference is not None:
            # A row group at a time: a reference of millions of rows is never loaded whole for 1,000.
            table = datasets.load_sample(store, Digest(reference.hash), 1000, seed=0)
            if set(columns) <= set(table.columns):
                frames.append(table[columns])
    if not frames:
        return False
    again = training.load_reproduced(store, reproduced)  # its hash came from the re-run (rerun_entry)
    try:
        return all(reproduce.same_predictions(recorded, again, frame[columns] if columns else frame)
                   for frame in frames)  # fmt: skip
    except Exception:  # the re-run's model cannot predict on the recorded rows: not the same model
        return False
