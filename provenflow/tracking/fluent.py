"""The team's own code, recorded as first-class: datasets it reads and writes, models it trains.

Inside ``provenflow.start(...)`` (a script, a notebook, any Prefect flow or task)::

    import provenflow as pf

    with pf.start("churn-train"):
        frame = pf.dataset("churn@latest")                 # read, and recorded as an input
        features = prepare(frame)
        pf.log_dataset(features, name="churn-features")    # a dataset version, as data-run makes
        model = make_pipeline(MyTransformer(), LogisticRegression()).fit(x, y)
        pf.metric("accuracy", 0.93)
        version = pf.log_model(model, name="churn", input_example=x.head(), eval=(x_test, y_test))
    print(version)                                         # churn@3: promote, serve, monitor it

Datasets go through the data-run path (``provenflow.data.versioning``): the same canonical hash,
profile, expectation suite and deduplication. Models are pickled with the project's own modules
they need (``provenflow.modeling.owncode``) and sealed when the run is written, like a
model-run's; their signature, task and classes are read from the object
(``provenflow.modeling.flavors``). Versions are written with the run, in its one transaction:
nothing is registered if the run fails.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select

from provenflow.data import datasets, validation, versioning
from provenflow.digest import Digest
from provenflow.errors import ProvenflowError, TrainingError
from provenflow.ledger import models as m
from provenflow.ledger.refs import check_name, resolve_dataset
from provenflow.modeling import flavors, owncode, training
from provenflow.project import project_root
from provenflow.tracking import pins
from provenflow.tracking.run import ModelOutput, Run, active_run


def _run_for(what: str) -> Run:
    try:
        return active_run()
    except ProvenflowError:
        raise ProvenflowError(
            f'{what} needs an active run: call it inside `with provenflow.start("NAME"):` '
            "(or after provenflow.start(...) and before provenflow.end())"
        ) from None


# -- datasets --------------------------------------------------------------------------


def dataset(ref: str) -> pd.DataFrame:
    """Dataset version REF (``NAME@VERSION`` or ``NAME@latest``) as a DataFrame, recorded as an
    input of the active run (its lineage, and the version a reproduction pins)."""
    run = _run_for("provenflow.dataset")
    with run.workspace.ledger.reader() as session:  # a reproduction reads the version it recorded
        version = resolve_dataset(session, pins.pinned_dataset(ref))
    run.input(version)
    return datasets.load_table(run.workspace.store, Digest(version.hash))


@dataclass(frozen=True)
class LoggedDataset:
    """A dataset version the run made; ``str()`` is its ref, ``NAME@VERSION``."""

    name: str
    version: str
    hash: str
    rows: int | None
    validation: dict = field(repr=False)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def __str__(self) -> str:
        return self.ref


def log_dataset(data: pd.DataFrame | str | os.PathLike, name: str, suite: str | None = None) -> LoggedDataset:
    """Record DATA (a DataFrame, or a CSV/JSON/Parquet file) as a new version of dataset NAME, an
    output of the active run: stored, profiled and validated exactly as ``data-run`` does (SUITE as
    there). The version is written when the run ends; the same content is the same version."""
    run = _run_for("provenflow.log_dataset")
    check_name(name, "dataset")
    workspace = run.workspace
    with tempfile.TemporaryDirectory(dir=_scratch(workspace)) as tmp:
        if isinstance(data, pd.DataFrame):
            source = str(Path(tmp) / f"{name}.parquet")
            data.to_parquet(source, index=False)
            shown = f"DataFrame ({len(data)} rows) from run {run.id}"
        elif isinstance(data, (str, os.PathLike)):
            source = shown = str(data)
        else:
            raise ProvenflowError(
                f"log_dataset takes a pandas DataFrame or a file path, not a {type(data).__name__}"
            )
        table = versioning.ingest_source(workspace, name, source)
    for note in table.notes:
        run.warn(note["message"], level=note["level"])
    expectations = versioning.choose_suite(workspace, name, table.sample, suite, table.output.profile)
    report = validation.validate_dataset(table.sample, expectations, table.validated_on)
    # Named so the next log_dataset of NAME keeps to this suite, as data runs do (catalog.default_suite_of).
    how = "default" if suite in (None, "new") else "given"
    run.link(
        "input",
        "suite",
        f"{name}:{how}:{expectations.where}",
        versioning.store_suite(workspace, expectations),
    )
    output = dataclasses.replace(table.output, source=shown)
    run.output(output)
    return LoggedDataset(name, output.digest.short, output.digest.hex, output.rows, report.as_dict())


def _scratch(workspace) -> str | None:
    from provenflow.data import ingest

    folder = ingest.workdir_for(workspace.store)
    return str(folder) if folder else None


# -- models ----------------------------------------------------------------------------


@dataclass
class LoggedModel:
    """A model version the run registers; ``str()`` is ``NAME@VERSION``.

    The number is given when the run is written (several runs may register NAME at once): before
    that it is the number the version will get if no other run registers NAME first."""

    name: str
    hash: str
    format: str
    flavor: str
    task: str
    code: dict[str, str]  # code files the model carries -> BLAKE3
    _run: Run = field(repr=False)

    @property
    def version(self) -> int:
        with self._run.workspace.ledger.reader() as session:
            number = session.scalar(
                select(m.ModelVersion.version).where(
                    m.ModelVersion.name == self.name, m.ModelVersion.hash == self.hash
                )
            )
            if number is None:
                highest = session.scalar(
                    select(func.max(m.ModelVersion.version)).where(m.ModelVersion.name == self.name)
                )
                number = (highest or 0) + 1
        return int(number)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def __str__(self) -> str:
        return self.ref


def log_model(
    model: Any,
    name: str,
    input_example: pd.DataFrame,
    *,
    eval: tuple[pd.DataFrame, pd.Series] | None = None,
    target: str | None = None,
    task: str | None = None,
    code_paths: list[str | os.PathLike] | None = None,
    reference: pd.DataFrame | None = None,
) -> LoggedModel:
    """Register MODEL (scikit-learn estimator or pipeline, ONNX model, or any object with
    ``predict(DataFrame)``) as a new version of NAME from the active run.

    INPUT_EXAMPLE gives the signature (a few rows of the model's inputs; the model must predict
    on them). EVAL=(X, y), held-out rows: their metrics are recorded, and a classifier's
    probabilities kept so its performance can be estimated before labels arrive (CBPE). TARGET
    names the label column (default: y's name) for the promotion gate and drift. The project's own
    modules the model needs travel with it, with CODE_PATHS (files or folders) added. REFERENCE
    (rows like the training data) is logged as dataset NAME-reference and becomes the drift
    reference, instead of the run's input dataset."""
    run = _run_for("provenflow.log_model")
    check_name(name, "model")
    described = flavors.describe(model, input_example, task)
    x_eval, y_eval = _eval(eval)
    target = target or (str(y_eval.name) if y_eval is not None and y_eval.name is not None else None)
    classes = described.classes
    if described.task == "classification" and classes is None:
        seen = y_eval if y_eval is not None else pd.Series(described.model.predict(input_example))
        classes = [training.plain_value(c) for c in sorted(pd.unique(seen.dropna()), key=str)]
    signature = flavors.signature_of(
        input_example, target, str(y_eval.dtype) if y_eval is not None else None, described.task, classes
    )
    if reference is not None:
        signature["reference"] = log_dataset(reference, name=f"{name}-reference").ref
    metrics = dict(run.metrics)
    if x_eval is not None:
        try:
            scores, predicted = training.evaluate_predicting(described.model, x_eval, y_eval, described.task)
        except Exception as exc:
            raise TrainingError(
                f"the model cannot be scored on eval=(X, y) ({type(exc).__name__}: {exc}); pass held-out "
                "rows shaped like input_example and their labels"
            ) from None
        for key, value in scores.items():
            if key not in run.metrics:
                run.metric(key, value)
        metrics = {**metrics, **scores}
        if (profiled := training.predictions_profile(predicted)) is not None:
            signature["predictions"] = profiled  # the drift monitor's reference for served predictions
    try:
        pickled = training.serialize(described.model)
    except (AttributeError, TypeError, pickle.PicklingError) as exc:
        raise TrainingError(
            f"the model ({type(described.model).__name__}) cannot be pickled ({exc}); classes defined inside "
            "a function, lambdas and open files cannot: define them at the top level of a module"
        ) from None
    owncode.refuse_main(pickled)
    files = owncode.collect(pickled, project_root(), code_paths or ())
    data, format = (
        (owncode.pack(pickled, files), owncode.FORMAT) if files else (pickled, training.MODEL_FORMAT)
    )
    if files:
        signature["code"] = {f.path: f.hash for f in files}
    needed = owncode.requirements(pickled, files)
    if needed:  # installed distributions it imports: a release image installs those it lacks
        signature["requirements"] = needed
    store = run.workspace.store
    # The example rows (up to 100), stored as datasets store a table; None when they do not go into
    # Parquet (objects of the team's own): a reproduction then compares on the reference.
    example = _stored_rows(store, input_example.head(100))
    if example:  # a reproduction compares predictions on it when a re-run's model has other bytes
        signature["input_example"] = example.hex
        run.link("output", "input-example", f"{name} input example", example)  # an edge: gc keeps it
    if x_eval is not None and target and (held_out := _stored_rows(store, x_eval.assign(**{target: y_eval}))):
        # The promotion gate scores this version on them, and knows them from the rows it trained on.
        signature["eval_rows"] = held_out.hex
        run.link("output", "eval-rows", f"{name} held-out rows", held_out)
    stored = store.put_bytes(data)
    output = ModelOutput(
        name=name, digest=stored.digest, size=stored.size, uri=store.uri(stored.digest), format=format,
        estimator=described.estimator, task=described.task, signature=signature, params=described.params,
        metrics=metrics,
    )  # fmt: skip
    run.output(output)
    run.parameter(f"model.{name}.flavor", described.flavor)
    if x_eval is not None and described.task == "classification":
        _keep_probabilities(run, described.model, x_eval, y_eval, output)
    return LoggedModel(name, stored.digest.hex, format, described.flavor, described.task,
                       dict(signature.get("code", {})), run)  # fmt: skip


def _stored_rows(store, rows: pd.DataFrame) -> Digest | None:
    """ROWS stored as datasets store a table; their hash, or None when they do not go into Parquet."""
    from provenflow.data import datasets

    try:
        return datasets.store_table(store, rows).digest
    except (ValueError, TypeError, NotImplementedError, ArithmeticError):  # pyarrow's conversion errors derive from these
        return None


def _eval(value: Any) -> tuple[pd.DataFrame | None, pd.Series | None]:
    if value is None:
        return None, None
    if not (isinstance(value, tuple) and len(value) == 2):
        raise TrainingError("eval must be a pair (X, y): held-out rows and their labels")
    x, y = value
    if not isinstance(x, pd.DataFrame):
        raise TrainingError(f"eval's X must be a pandas DataFrame, not a {type(x).__name__}")
    y = y if isinstance(y, pd.Series) else pd.Series(y)
    if len(x) != len(y):
        raise TrainingError(f"eval's X has {len(x)} rows but y has {len(y)}; give one label a row")
    return x, y.reset_index(drop=True).set_axis(x.index)


def _keep_probabilities(run: Run, model: Any, x: pd.DataFrame, y: pd.Series, output: ModelOutput) -> None:
    """The held-out probabilities CBPE estimates from, linked as model-run links them."""
    from provenflow.monitoring import estimation

    try:
        reference = estimation.reference_of(model, x, y, model_hash=output.digest.hex)
    except (AttributeError, ValueError, TypeError):  # predict_proba refused: no estimate, still a model
        return
    if reference is not None:
        digest = estimation.store_reference(run.workspace, reference)
        run.link("output", estimation.CALIBRATION_KIND, f"{output.name} held-out probabilities", digest)
