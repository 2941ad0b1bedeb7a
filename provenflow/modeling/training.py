"""Training any scikit-learn estimator on a tabular dataset, and evaluating it.

scikit-learn is imported inside the functions (it costs ~1 s), so the CLI starts fast.
"""

from __future__ import annotations

import importlib
import json
import pickle
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from provenflow.data import features
from provenflow.data.data_checks import sorted_codes
from provenflow.data.datasets import is_numeric
from provenflow.data.features import FeatureChoice
from provenflow.digest import Digest
from provenflow.errors import IntegrityError, TrainingError, did_you_mean, first_line
from provenflow.modeling import signing
from provenflow.modeling.signing import Key, ModelIdentity, Sealed
from provenflow.project import project_root

if TYPE_CHECKING:
    from provenflow.monitoring.estimation import Reference
    from provenflow.storage.store import ContentStore

# The canonical model form: a pickle (protocol 5) of the fitted Pipeline. Two fits with the same
# seed and data pickle to the same bytes, so the content hash identifies the model; bytes are only
# unpickled after the model's seal (provenflow.modeling.signing) and their hash have been checked.
MODEL_FORMAT = "sklearn-pickle-v5"


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is JSON when it parses as JSON, else a string."""
    if "=" not in text:
        raise TrainingError(f"parameter {text!r} is not key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise TrainingError(f"parameter {text!r} has no name before '='")
    lowered = raw.strip()
    if lowered in ("None", "none", "null"):
        return key, None
    if lowered in ("True", "False"):
        return key, lowered == "True"
    try:
        return key, json.loads(lowered)
    except json.JSONDecodeError:
        return key, raw


def estimator_module_allowed(module_name: str, allowed: Sequence[str]) -> bool:
    """Whether a dotted module name is one of the allowed packages/modules or inside one."""
    if not all(part.isidentifier() for part in module_name.split(".")):
        return False
    return any(module_name == name or module_name.startswith(name + ".") for name in allowed)


def import_estimator(
    path: str, params: dict[str, Any], seed: int | None = None, allowed: Sequence[str] | None = None
) -> Any:
    """Instantiate an estimator from its import path and hyper-parameters, with clear errors.

    Only modules under ``allowed`` (default: the estimator_modules setting) are imported: an
    import runs the module's top-level code, so the check comes before it.
    An estimator with a ``random_state`` the caller did not set gets ``seed``, so a run is
    deterministic unless ``random_state=None`` is asked for explicitly.
    """
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise TrainingError(
            f"estimator {path!r} is not an import path; expected e.g. sklearn.ensemble.RandomForestClassifier"
        )
    if allowed is None:
        from provenflow.settings import get_settings  # not at module level: the server image has no settings

        allowed = get_settings().estimator_modules
    if not estimator_module_allowed(module_name, allowed):
        package = module_name.split(".")[0]
        raise TrainingError(
            f"estimator {path!r} is from module {module_name!r}, which is not in the allowed estimator "
            f"modules ({', '.join(allowed) or 'none'}); to allow it, set "
            f"PROVENFLOW_ESTIMATOR_MODULES={','.join([*allowed, package])}"
        )
    # Estimators of the user's own are importable from the project root; after the installed
    # packages, so a folder named like an allowed package cannot stand in for it.
    root = str(project_root())
    if root not in sys.path:
        sys.path.append(root)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainingError(f"cannot import module {module_name!r} for estimator {path!r}: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise TrainingError(f"module {module_name!r} has no {attr!r}.{did_you_mean(attr, names)}")
    from sklearn.base import BaseEstimator

    if not (isinstance(cls, type) and hasattr(cls, "fit") and hasattr(cls, "get_params")):
        raise TrainingError(f"{path!r} is not a scikit-learn estimator class (it needs fit and get_params)")
    if not issubclass(cls, BaseEstimator):
        raise TrainingError(f"{path!r} does not derive from sklearn.base.BaseEstimator")
    try:
        estimator = cls()
    except TypeError as exc:
        raise TrainingError(f"cannot construct {path!r} without arguments: {exc}") from None
    valid = estimator.get_params(deep=False)
    unknown = [k for k in params if k not in valid]
    if unknown:
        hints = "".join(did_you_mean(k, valid) for k in unknown)
        raise TrainingError(
            f"{path} has no hyper-parameter {', '.join(map(repr, unknown))}.{hints} Valid: {', '.join(sorted(valid))}"
        )
    if seed is not None and "random_state" in valid and "random_state" not in params:
        params = {**params, "random_state": seed}
    estimator.set_params(**params)
    return estimator


def task_of(estimator: Any) -> str:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return "classification"
    if is_regressor(estimator):
        return "regression"
    raise TrainingError(f"{type(estimator).__name__} is neither a classifier nor a regressor")


def check_target_column(frame: pd.DataFrame, target: str) -> None:
    if target not in frame.columns:
        raise TrainingError(
            f"target column {target!r} is not in the dataset.{did_you_mean(target, map(str, frame.columns))} "
            f"Columns: {', '.join(map(str, frame.columns))}"
        )


def split_features(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.Series]:
    check_target_column(frame, target)
    labelled = frame[frame[target].notna()]
    if len(labelled) < 4:
        raise TrainingError(
            f"only {len(labelled)} rows have a value in {target!r}; need at least 4 to train and test"
        )
    features = labelled.drop(columns=[target])
    if features.shape[1] == 0:
        raise TrainingError(f"the dataset has no columns besides the target {target!r}")
    return features, labelled[target]


def features_of(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """The model's input columns, prepared the way training prepared them."""
    features, _ = split_features(frame, target)
    return _as_object(features)


def _as_object(frame: pd.DataFrame) -> pd.DataFrame:
    """Non-numeric columns as object dtype, so the imputer sees one kind of missing value."""
    out = frame.copy()
    for column in out.columns:
        if not is_numeric(out[column]):
            out[column] = out[column].astype(object).where(out[column].notna(), np.nan)
    return out


@dataclass
class TrainedModel:
    pipeline: Any
    task: str
    metrics: dict[str, float]
    signature: dict
    params: dict[str, Any]
    train_rows: int
    test_rows: int
    unlabelled_rows: int = 0  # rows without a target value: left out of training and evaluation
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # columns left out, and why
    # A classifier's held-out probabilities, predictions and labels, for estimating its performance
    # before labels arrive (provenflow.monitoring.estimation); model_hash is filled in once the model is stored.
    reference: Reference | None = None


# A classification target is a set of classes: up to FEW_CLASSES values always pass; beyond that,
# values that are not whole numbers, or fewer than ROWS_PER_CLASS rows per value on average, say the
# column is a quantity (an accuracy of 0.01 over 95 "classes" is what training it would give).
FEW_CLASSES = 20
ROWS_PER_CLASS = 20


def looks_continuous(labels: pd.Series) -> bool:
    """Whether a target's values look like a measured quantity rather than classes.

    Text, categories and booleans are classes. Numbers are classes when there are at most
    FEW_CLASSES distinct values, or when all are whole numbers with ROWS_PER_CLASS rows or more per
    value on average (class ids).
    """
    if not is_numeric(labels):
        return False
    values = labels.dropna().to_numpy(dtype="float64")
    distinct = len(np.unique(values))
    if distinct <= FEW_CLASSES:
        return False
    whole = bool(np.all(np.isfinite(values) & (values == np.round(values))))
    return not whole or distinct * ROWS_PER_CLASS > len(values)


def check_target(labels: pd.Series, target: str, task: str, forced: bool = False) -> None:
    """Refuse a target the estimator cannot sensibly learn, before any fit; ``forced`` (the user
    said ``--task classification``) lets a classifier take a target that looks continuous."""
    if task == "classification" and looks_continuous(labels) and not forced:
        raise TrainingError(
            f"target {target!r} looks continuous ({labels.nunique()} distinct numeric values over "
            f"{len(labels)} rows) for a classifier; use a regressor (e.g. "
            "sklearn.ensemble.RandomForestRegressor), bin the target into classes first, or say "
            "--task classification (task='classification') if these numbers are classes"
        )
    if task == "classification" and is_numeric(labels):
        values = labels.dropna().to_numpy(dtype="float64")
        fractional = np.unique(values[np.isfinite(values) & (values != np.round(values))])
        if len(fractional):
            examples = ", ".join(f"{v:g}" for v in fractional[:3])
            raise TrainingError(
                f"target {target!r} has fractional values ({examples}, …) that a classifier cannot take "
                "as classes; use a regressor (e.g. sklearn.ensemble.RandomForestRegressor), or map the "
                "values to class names or whole numbers first"
            )
    if task == "regression" and not pd.api.types.is_numeric_dtype(labels):
        examples = ", ".join(repr(str(v)) for v in labels.drop_duplicates().head(3))
        raise TrainingError(
            f"target {target!r} is not numeric ({examples}, …) and a regressor needs numbers; use a "
            "classifier (e.g. sklearn.ensemble.RandomForestClassifier) or a numeric target"
        )


def split_rows(
    frame: pd.DataFrame, target: str, task: str, seed: int, test_size: float, forced: bool = False
) -> tuple:
    """(x_train, x_test, y_train, y_test): the same seed and test size always give the same rows,
    so a later evaluation (the promotion gate) can use exactly the held-out rows of training.
    Rows without a target value are left out of both. ``forced``: see ``check_target``."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise TrainingError(f"test size {test_size} must be between 0 and 1 (a fraction of the rows)")
    if not 0 <= seed < 2**32:
        raise TrainingError(f"seed {seed} must be between 0 and 2**32 - 1")
    features, labels = split_features(frame, target)
    check_target(labels, target, task, forced)
    features = _as_object(features)
    stratify = None
    if task == "classification":
        counts = labels.value_counts()
        if len(counts) < 2:
            raise TrainingError(
                f"target {target!r} has a single class ({counts.index[0]!r}); a classifier needs two or more"
            )
        if counts.min() >= 2:
            stratify = labels
    try:
        return train_test_split(features, labels, test_size=test_size, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise TrainingError(f"cannot split {len(labels)} rows with test size {test_size}: {exc}") from None


TASKS = ("classification", "regression")


def train_and_evaluate(
    frame: pd.DataFrame,
    target: str,
    estimator: Any,
    seed: int,
    test_size: float,
    choice: FeatureChoice | None = None,
    profile: dict | None = None,
    task: str | None = None,
) -> TrainedModel:
    """Fit ``estimator`` on the columns ``choice`` selects (by default every column whose role
    is usable: ``provenflow.data.features``), with preprocessing fitted to it, and score it on the
    held-out rows. ``profile`` is the dataset version's recorded profile (computed when not
    given); ``task='classification'`` lets a classifier learn a target that looks continuous."""
    from sklearn.utils._param_validation import InvalidParameterError

    from provenflow.modeling.preprocessing import build_pipeline

    kind = task_of(estimator)
    if task is not None and task not in TASKS:
        raise TrainingError(f"task {task!r} is not one of {', '.join(TASKS)}{did_you_mean(task, TASKS)}")
    if task is not None and task != kind:
        raise TrainingError(
            f"task {task!r} was asked for, but {type(estimator).__name__} is a {kind} estimator; "
            f"choose a {task} estimator or leave the task out"
        )
    check_target_column(frame, target)
    selection = features.select(frame, target, choice or FeatureChoice(), profile)
    columns = list(selection.used)
    x_train, x_test, y_train, y_test = split_rows(
        frame[[*columns, target]], target, kind, seed, test_size, forced=task == "classification"
    )
    pipeline = build_pipeline(x_train, selection, estimator)
    unlabelled = int(frame[target].isna().sum())
    # The data checks need the rows, not the model: they run in a thread while it fits (a tree's
    # fit leaves the GIL), instead of after it. A 20-tree forest on 100k rows: 2.71 s against 2.93 s
    # (medians, interleaved, load 1.3); on 5k rows the two threads' Python parts take turns (0.185 s
    # against 0.177 s), as the checks cost ~30 ms there once labels are codes (data_checks.sorted_codes).
    with ThreadPoolExecutor(1, thread_name_prefix="provenflow-checks") as checks:
        # Its own (shallow) frames: no pandas object is shared between the two threads.
        split = tuple(part.copy(deep=False) for part in (x_train, x_test, y_train, y_test))
        findings = checks.submit(_findings, target, kind, selection, split, unlabelled, seed)
        try:
            pipeline.fit(x_train, y_train)
        except (InvalidParameterError, ValueError, TypeError) as exc:
            params = repr(estimator.get_params(deep=False))
            if len(params) > 500:
                params = params[:500] + "…"
            raise TrainingError(
                f"{type(estimator).__name__} rejected its hyper-parameters or data: {exc} (parameters: {params})"
            ) from None
        try:
            metrics, predicted = evaluate_predicting(pipeline, x_test, y_test, kind)
        except ValueError as exc:  # e.g. RadiusNeighbors* with a held-out row that has no neighbour
            raise TrainingError(
                f"{type(estimator).__name__} trained but could not be scored on the {len(y_test)} held-out rows: "
                f"{first_line(exc)}; change its hyper-parameters (--param) for this data"
            ) from None
        from provenflow.monitoring.estimation import reference_of

        try:
            reference = reference_of(pipeline, x_test, y_test, model_hash="", seed=seed)
        except (AttributeError, ValueError, TypeError):  # predict_proba refused: no estimate, still a model
            reference = None
        warnings, notices = findings.result()
    signature = {
        "inputs": [_input_entry(frame, name, role, selection) for name, role in selection.used.items()],
        "target": {"name": target, "dtype": str(y_train.dtype)},
        "task": kind,
        "left_out": dict(selection.left_out),
    }
    if kind == "classification":
        signature["classes"] = [plain_value(c) for c in pipeline.classes_]
    if (profiled := predictions_profile(predicted)) is not None:
        signature["predictions"] = profiled
    return TrainedModel(
        pipeline=pipeline,
        task=kind,
        metrics=metrics,
        signature=signature,
        params={k: plain_value(v) for k, v in estimator.get_params(deep=False).items()},
        train_rows=len(x_train),
        test_rows=len(x_test),
        unlabelled_rows=unlabelled,
        warnings=warnings,
        notices=notices,
        reference=reference,
    )


def _findings(
    target: str, kind: str, selection: features.Selection, split: tuple, unlabelled: int, seed: int
) -> tuple[list[str], list[str]]:
    """(warnings, notices) of a model run: leaky features and classes too rare to score; columns
    left out by their role and rows without a target."""
    from provenflow.data import data_checks

    x_train, x_test, y_train, y_test = split
    notices = [
        f"column {name!r} left out ({why})" for name, why in selection.left_out.items() if why != "excluded"
    ]
    if unlabelled:
        notices.append(f"{unlabelled} rows have no {target!r} value: left out of training and evaluation")
    if dated := selection.of_role("datetime"):
        # Held-out rows drawn at random sit between training rows in time: a model of the date scores
        # as if it knew the future (hourly temperatures by timestamp alone: R² 0.999).
        notices.append(
            f"the held-out rows are drawn at random across {', '.join(map(repr, dated))}: the metrics say how "
            "the model fills gaps between known dates, not how it does on dates after its training data"
        )
    score = "accuracy" if kind == "classification" else "R²"
    columns = selection.of_role("numeric", "boolean", "categorical")
    warnings = [
        f"column {name!r} alone predicts {target!r} on the held-out rows with {score} {value:.3f}: a copy "
        f"of the target, or computed from it (leakage)? Leave it out with --exclude {name}"
        for name, value in data_checks.leaky_features(
            x_train, y_train, x_test, y_test, columns, kind, seed
        ).items()
    ]
    if kind == "classification":
        rare = data_checks.rare_test_classes(y_train, y_test)
        if rare:
            shown = ", ".join(f"{c!r} ({n})" for c, n in list(rare.items())[:10])
            warnings.append(
                f"{len(rare)} classes of {target!r} have fewer than 2 rows among the {len(y_test)} held-out "
                f"rows: {shown}{'…' if len(rare) > 10 else ''}; their scores say little (more data, or a "
                "larger test size)"
            )
    return warnings, notices


def _input_entry(frame: pd.DataFrame, name: str, role: str, selection: features.Selection) -> dict:
    """One input of the model's signature: what the served model takes for this column (``dtype``:
    the dataset's)."""
    if role == "datetime":
        kind = "datetime"
    elif role in ("numeric", "boolean") and is_numeric(frame[name]):
        kind = "numeric"
    else:
        kind = "categorical"
    entry = {"name": name, "dtype": str(frame[name].dtype), "kind": kind, "role": role}
    if kind == "datetime":
        entry["format"] = selection.date_formats.get(name)
    return entry


def predictions_profile(predicted: np.ndarray) -> dict | None:
    """The profile of a model's PREDICTED values on its held-out rows: what the drift monitor compares
    the served predictions with (not the target's profile: a regressor's predictions are narrower than
    its target, which read as drift on every check of unshifted traffic). None when there are none, or
    more than one column of them."""
    from provenflow.data.datasets import profile_of

    if predicted.ndim != 1 or not len(predicted):
        return None
    return profile_of(pd.DataFrame({"prediction": predicted}))["columns"]["prediction"]


def evaluate(pipeline: Any, features: pd.DataFrame, labels: pd.Series, task: str) -> dict[str, float]:
    return evaluate_predicting(pipeline, features, labels, task)[0]


def evaluate_predicting(
    pipeline: Any, features: pd.DataFrame, labels: pd.Series, task: str
) -> tuple[dict[str, float], np.ndarray]:
    """The held-out metrics, and the predictions they were computed from (the drift monitor's
    reference profile is made from them: not a second pass of the model)."""
    from sklearn import metrics as skm

    if task == "regression":
        predicted = np.asarray(pipeline.predict(features))
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(labels, predicted))),
            "mae": float(skm.mean_absolute_error(labels, predicted)),
            "r2": float(skm.r2_score(labels, predicted)),
        }, predicted
    classes = list(pipeline.classes_)
    binary = len(classes) == 2
    proba = None
    if hasattr(pipeline, "predict_proba") and labels.nunique() == len(classes):
        proba = pipeline.predict_proba(features)
    if proba is not None and _predicts_by_probability(pipeline):
        # What its predict computes, from the probabilities already at hand: one pass of the
        # preprocessing and of the trees, not two (a sweep scores every fold of every trial).
        predicted = pipeline.classes_.take(np.argmax(proba, axis=1), axis=0)
    else:
        predicted = pipeline.predict(features)
    answered = np.asarray(predicted)
    if (codes := sorted_codes(labels, predicted, classes)) is not None:
        labels, predicted, classes = codes[0], codes[1], list(codes[2])
    out = {
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "f1": float(
            skm.f1_score(labels, predicted, average="binary", pos_label=classes[-1])
            if binary
            else skm.f1_score(labels, predicted, average="macro")
        ),
    }
    if proba is not None:
        if binary:
            out["roc_auc"] = float(skm.roc_auc_score(labels, proba[:, 1]))
        else:
            out["roc_auc"] = float(
                skm.roc_auc_score(labels, proba, multi_class="ovr", average="macro", labels=classes)
            )
    return out, answered


def _predicts_by_probability(pipeline: Any) -> bool:
    """Whether the model's ``predict`` is, by its own code, the class of highest ``predict_proba``
    (scikit-learn's forests), so one can stand for the other with the same result. Not for others
    whose predict takes another path (boosting thresholds raw scores, trees normalise after)."""
    from sklearn.ensemble._forest import ForestClassifier

    final = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    return getattr(type(final), "predict", None) is ForestClassifier.predict


def serialize(pipeline: Any) -> bytes:
    return pickle.dumps(pipeline, protocol=5)


def deserialize(data: bytes, model: ModelIdentity, seal: str | None, key: Key | None) -> Any:
    """The one place provenflow unpickles: only bytes of a model whose seal checks out under ``key``
    and whose bytes hash to the sealed hash. ``key=None`` skips the seal, only where the hash came
    by a channel the ledger's writers cannot touch: a bundle baked into a release image with no key
    given (provenflow.serving.bundle), and a reproduction's own re-run (``load_reproduced``)."""
    if key is not None:
        signing.verify(model, seal, key)
    actual = Digest.of_bytes(data)
    if actual.hex != model.hash:
        raise IntegrityError(
            f"model bytes hash to {actual.hex}, not the recorded {model.hash}; refusing to load them"
        )
    from provenflow.modeling import owncode

    if model.format == owncode.FORMAT:  # the team's own code rides along: on sys.path only now
        return owncode.load(data, model.ref, actual.hex)
    return owncode.unpickle(data, model.ref)


def load_model(store: ContentStore, version: Sealed, key: Key | None = None) -> Any:
    """The fitted pipeline of a model version (a ledger row): its seal checked before its bytes are
    even read, then their hash, then unpickled. ``key`` defaults to the configured signing key."""
    from provenflow.modeling.owncode import check_requirements

    model = ModelIdentity.of(version)
    key = key or signing.signing_key()
    signing.verify(model, version.seal, key)
    check_requirements((getattr(version, "signature", None) or {}).get("requirements") or [], model.ref)
    return deserialize(store.read_bytes(Digest(model.hash)), model, version.seal, key)


def load_reproduced(store: ContentStore, digest: Digest) -> Any:
    """A model that a reproduction's own child process just trained and reported to its parent
    over a pipe (``provenflow.modeling.reproduce.replay``): not a registered version, so it has no seal; the
    hash it was handed is trusted because it did not come from the ledger."""
    from provenflow.modeling import owncode

    data = store.read_bytes(digest)
    # A model the team's own code logged may be a code archive (a zip), not a bare pickle.
    format = owncode.FORMAT if data[:4] == b"PK\x03\x04" else MODEL_FORMAT
    return deserialize(data, ModelIdentity("(reproduced)", 0, digest.hex, format), None, None)


def plain_value(value: Any) -> Any:
    """A hyper-parameter or class label as JSON takes it: numpy scalars as Python's, objects as repr."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def cross_validate(
    frame: pd.DataFrame,
    target: str,
    estimator: Any,
    seed: int,
    test_size: float,
    folds: int,
    choice: FeatureChoice | None = None,
    profile: dict | None = None,
    task: str | None = None,
) -> dict[str, float]:
    """Each metric's mean and standard deviation (``<metric>.cv_mean``, ``<metric>.cv_std``) over
    FOLDS folds of the training rows (the rows ``train_and_evaluate`` fits on; its held-out rows
    stay unseen), shuffled by SEED: stratified for a classifier, as scikit-learn's own CV does."""
    plan = cv_plan(frame, target, estimator, seed, test_size, folds, choice, profile, task)
    return cv_summary([fold_score(plan, estimator, fit_rows, score_rows) for fit_rows, score_rows in plan.splits])


@dataclass(frozen=True)
class CvPlan:
    """The training rows ``train_and_evaluate`` fits on, the columns used, and the folds over them."""

    x_train: pd.DataFrame
    y_train: pd.Series
    selection: Any
    kind: str
    splits: list[tuple[np.ndarray, np.ndarray]]


def cv_plan(
    frame: pd.DataFrame,
    target: str,
    estimator: Any,
    seed: int,
    test_size: float,
    folds: int,
    choice: FeatureChoice | None = None,
    profile: dict | None = None,
    task: str | None = None,
) -> CvPlan:
    """What ``cross_validate`` fits on, computed once: a sweep shares it between all its trials."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds < 2:
        raise TrainingError(f"--cv {folds}: cross-validation needs at least 2 folds")
    kind = task_of(estimator)
    selection = features.select(frame, target, choice or FeatureChoice(), profile)
    columns = list(selection.used)
    x_train, _, y_train, _ = split_rows(
        frame[[*columns, target]], target, kind, seed, test_size, forced=task == "classification"
    )
    splitter = (StratifiedKFold if kind == "classification" else KFold)(folds, shuffle=True, random_state=seed)
    return CvPlan(x_train, y_train, selection, kind, list(splitter.split(x_train, y_train)))


def fold_score(plan: CvPlan, estimator: Any, fit_rows: np.ndarray, score_rows: np.ndarray) -> dict[str, float]:
    """One fold: fit a fresh pipeline on FIT_ROWS of the plan's training rows, score it on SCORE_ROWS."""
    from sklearn.base import clone

    from provenflow.modeling.preprocessing import build_pipeline

    x_fit, y_fit = plan.x_train.iloc[fit_rows], plan.y_train.iloc[fit_rows]
    pipeline = build_pipeline(x_fit, plan.selection, clone(estimator))
    pipeline.fit(x_fit, y_fit)
    return evaluate(pipeline, plan.x_train.iloc[score_rows], plan.y_train.iloc[score_rows], plan.kind)


def cv_summary(scores: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean and standard deviation over the folds' scores."""
    out: dict[str, float] = {}
    for name in scores[0]:
        values = np.array([s[name] for s in scores if name in s])
        out[f"{name}.cv_mean"] = float(values.mean())
        out[f"{name}.cv_std"] = float(values.std())
    return out
