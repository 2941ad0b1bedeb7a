"""Estimated performance of a classifier before its labels arrive: confidence-based performance
estimation (CBPE, the method NannyML published), from the probabilities the model served.

A model run keeps its classifier's held-out split as a **reference**: the probabilities the model
gave each held-out row, the class it predicted and the true class (a small Parquet table in the
store, linked to the run as an output of kind ``calibration``, in the run's own transaction). To
estimate a window of production predictions:

1. Calibrate: isotonic regressions fitted on the reference map each class's raw probability to
   how often that class was the truth (one-vs-rest; a binary model calibrates its positive class
   and the negative class is the complement; several classes are normalised to sum to 1).
2. The calibrated probability of each logged row is the chance that each class is its truth, so
   the sums over the window are the *expected* confusion matrix: expected accuracy is the mean
   calibrated probability of the predicted class; F1 (binary: the last class is positive, as in
   training; several classes: macro) from the expected true/false positives and false negatives;
   ROC AUC with the calibrated probabilities as soft labels over the raw scores (macro one-vs-rest).
3. Label shift: the same calibrated probabilities re-weighted to the class prior that EM finds
   for the window (Saerens et al. 2002) give a second reading of each metric, the one to expect if
   the classes' mix moved rather than the inputs.
4. Sampling error, from the reference: each metric's spread over bootstrap samples of the
   reference, scaled to the window's size (√(sample/n)); ``<metric>_low``/``<metric>_high`` span
   both readings ± 3 of them (3: NannyML's band).

What it can and cannot see (tests/test_estimation.py shows each): CBPE follows covariate shift
(inputs move to where the model is less sure, within the inputs it was trained on: its
probabilities say so). Under a shift of the classes' prior, CBPE alone can report a steady or even
better accuracy while the real one falls (the calibration holds for the training prior); the
label-shift accuracy follows it, and the band spans both, so the estimate never claims stability
there. Both are blind to concept shift: when the same inputs come to mean other labels, the
probabilities do not change and neither does any estimate. Only realized performance, from the
labels once they arrive, sees that; the estimate is a forecast of it, never a substitute.

scikit-learn is imported inside the functions (the CLI starts fast); nannyml itself is not a
dependency (its pins fight ours), the method is ~100 lines of numpy.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from provenflow.errors import DataError, EstimationUnavailable

if TYPE_CHECKING:
    from provenflow.digest import Digest
    from provenflow.workspace import Workspace


class Versioned(Protocol):
    """A model version by its ``NAME@N`` ref: a ledger ``ModelVersion``, the drift monitor's ``Monitored``."""

    @property
    def ref(self) -> str: ...


CALIBRATION_KIND = "calibration"  # the kind of a model run's edge to its reference
# At most this many held-out rows are kept (drawn with the run's seed): isotonic calibration needs
# thousands, not millions, and the object stays a few MB.
REFERENCE_ROWS = 100_000
SAMPLING_ERROR_RANGE = 3.0  # the band is the estimate ± this many sampling errors (as NannyML)
BOOTSTRAP_ROWS = 5_000  # reference rows per bootstrap sample of the sampling errors
BOOTSTRAP_DRAWS = 30
_META = b"provenflow"


@dataclass(frozen=True)
class Reference:
    """A classifier's held-out rows: raw probabilities (one column per class, in ``classes``
    order), the predicted and the true class as indices into ``classes``; ``classes`` as the text
    the prediction log names its ``proba_<class>`` columns with; ``model_hash`` the model they came from."""

    classes: tuple[str, ...]
    proba: np.ndarray
    predicted: np.ndarray
    label: np.ndarray
    model_hash: str

    # Fitted once per reference: a monitor estimates several windows with one.
    @cached_property
    def calibrators(self) -> list[Any]:
        return fit_calibrators(self)

    @cached_property
    def bootstrap_spread(self) -> tuple[int, dict[str, float]]:
        """(sample size, each metric's spread over seeded bootstrap samples of that size)."""
        size = min(len(self.label), BOOTSTRAP_ROWS)
        onehot = np.zeros_like(self.proba)
        known = self.label >= 0
        onehot[np.flatnonzero(known), self.label[known]] = 1.0
        rng = np.random.default_rng(0)
        samples: dict[str, list[float]] = {}
        for _ in range(BOOTSTRAP_DRAWS):
            pick = rng.integers(0, len(self.label), size)
            for name, value in _metrics(onehot[pick], self.proba[pick], self.predicted[pick]).items():
                samples.setdefault(name, []).append(value)
        return size, {name: float(np.std(values)) for name, values in samples.items()}

    def to_bytes(self) -> bytes:
        """A Parquet table (``label``, ``prediction``, ``proba_<class>``…; classes as text), readable
        by any Parquet reader; the same rows give the same bytes."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        classes = np.array([*self.classes, None], dtype=object)  # label -1: a class the model never learnt
        columns: dict[str, Any] = {"label": classes[self.label], "prediction": classes[self.predicted]}
        columns.update({f"proba_{c}": self.proba[:, i] for i, c in enumerate(self.classes)})
        table = pa.table(columns).replace_schema_metadata(
            {_META: json.dumps({"classes": list(self.classes), "model_hash": self.model_hash})}
        )
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Reference:
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        meta = json.loads(table.schema.metadata[_META])
        classes = tuple(meta["classes"])
        index = {c: i for i, c in enumerate(classes)}
        frame = table.to_pandas()
        return cls(
            classes=classes,
            proba=frame[[f"proba_{c}" for c in classes]].to_numpy(dtype=np.float64),
            predicted=frame["prediction"].map(index).to_numpy(dtype=np.int64),
            label=frame["label"].map(index).fillna(-1).to_numpy(dtype=np.int64),
            model_hash=meta["model_hash"],
        )


def reference_of(
    pipeline: Any, features: pd.DataFrame, labels: pd.Series, model_hash: str, seed: int = 0
) -> Reference | None:
    """The reference of a fitted classifier from its held-out rows; None for a model without
    ``predict_proba`` (a regressor, or e.g. a NearestCentroid), which CBPE cannot estimate."""
    from sklearn.base import is_classifier

    # A team's own classifier (provenflow.log_model) need not be a scikit-learn one: classes_ will
    # do (scikit-learn's is_classifier raises on an object without its tags).
    try:
        classifier = is_classifier(pipeline)
    except AttributeError:
        classifier = False
    classifier = classifier or getattr(pipeline, "classes_", None) is not None
    if not classifier or not hasattr(pipeline, "predict_proba") or len(labels) == 0:
        return None
    if len(labels) > REFERENCE_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), REFERENCE_ROWS, replace=False))
        features, labels = features.iloc[keep], labels.iloc[keep]
    classes = [str(c) for c in _plain_classes(pipeline.classes_)]
    index = {c: i for i, c in enumerate(classes)}
    predicted = [index[str(c)] for c in _plain_classes(pipeline.predict(features))]
    return Reference(
        classes=tuple(classes),
        proba=np.asarray(pipeline.predict_proba(features), dtype=np.float64),
        predicted=np.asarray(predicted, dtype=np.int64),
        # A held-out class absent from the training rows (too rare to stratify) is -1: always wrong.
        label=np.asarray([index.get(str(c), -1) for c in _plain_classes(labels.to_numpy())], dtype=np.int64),
        model_hash=model_hash,
    )


def _plain_classes(values: Any) -> list[Any]:
    """Class values as the prediction log writes them (numpy scalars as Python ones: 1, not 1.0)."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


# -- the method: pure functions on arrays ------------------------------------------------


def fit_calibrators(reference: Reference) -> list[Any]:
    """Isotonic regressions from each class's raw probability to the frequency of that class on
    the reference (for two classes, one: the positive class's)."""
    from sklearn.isotonic import IsotonicRegression

    columns = [1] if len(reference.classes) == 2 else range(len(reference.classes))
    calibrators = []
    for c in columns:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(reference.proba[:, c], (reference.label == c).astype(np.float64))
        calibrators.append(iso)
    return calibrators


def calibrate(calibrators: list[Any], proba: np.ndarray) -> np.ndarray:
    """Calibrated probabilities (rows sum to 1) for raw ``proba`` (n rows × classes)."""
    if proba.shape[1] == 2:
        positive = calibrators[0].predict(proba[:, 1])
        return np.column_stack([1.0 - positive, positive])
    out = np.column_stack([cal.predict(proba[:, c]) for c, cal in enumerate(calibrators)])
    total = out.sum(axis=1, keepdims=True)
    # A row every calibrator put at 0 (raw scores below anything seen on the reference): keep its raw ones.
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), proba)


def expected_accuracy(calibrated: np.ndarray, predicted: np.ndarray) -> float:
    """Mean chance that the predicted class is the true one."""
    return float(calibrated[np.arange(len(predicted)), predicted].mean())


def expected_f1(calibrated: np.ndarray, predicted: np.ndarray) -> float:
    """F1 of the expected confusion matrix: of the positive (last) class for two classes, else
    the macro average over classes (as ``provenflow.modeling.training.evaluate`` scores)."""
    classes = range(calibrated.shape[1])
    scores = []
    for c in [calibrated.shape[1] - 1] if calibrated.shape[1] == 2 else classes:
        chosen = predicted == c
        tp = calibrated[chosen, c].sum()
        fp = (1.0 - calibrated[chosen, c]).sum()
        fn = calibrated[~chosen, c].sum()
        denominator = 2 * tp + fp + fn
        scores.append(2 * tp / denominator if denominator > 0 else 0.0)
    return float(np.mean(scores))


def expected_roc_auc(calibrated: np.ndarray, proba: np.ndarray) -> float | None:
    """ROC AUC with the calibrated probabilities as soft labels and the raw ones as scores (each
    row counts as positive with weight p and negative with 1 − p); macro one-vs-rest for more than
    two classes. None when a class is expected nowhere (AUC is undefined then)."""
    from sklearn.metrics import roc_auc_score

    columns = [1] if proba.shape[1] == 2 else range(proba.shape[1])
    scores = []
    n = len(proba)
    truth = np.r_[np.ones(n), np.zeros(n)]
    for c in columns:
        weight = np.r_[calibrated[:, c], 1.0 - calibrated[:, c]]
        if weight[:n].sum() <= 0 or weight[n:].sum() <= 0:
            return None
        scores.append(roc_auc_score(truth, np.r_[proba[:, c], proba[:, c]], sample_weight=weight))
    return float(np.mean(scores))


def prior_shifted(
    calibrated: np.ndarray, reference_prior: np.ndarray, iterations: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """(class prior, probabilities) of the window if the shift is in the labels' prior: the
    maximum-likelihood prior by EM (Saerens, Latinne & Decaestecker 2002), each row's calibrated
    probabilities re-weighted from the reference prior to it. Under pure covariate shift the prior
    found stays near the reference's and so do the probabilities."""
    ratio_base = np.where(reference_prior > 0, reference_prior, 1.0)
    prior = reference_prior.copy()
    for _ in range(iterations):
        weighted = calibrated * (prior / ratio_base)
        weighted /= np.maximum(weighted.sum(axis=1, keepdims=True), 1e-12)
        new = weighted.mean(axis=0)
        converged = np.abs(new - prior).max() < 1e-6
        prior = new
        if converged:
            break
    weighted = calibrated * (prior / ratio_base)
    return prior, weighted / np.maximum(weighted.sum(axis=1, keepdims=True), 1e-12)


def _metrics(truth: np.ndarray, proba: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """accuracy, f1 and roc_auc from class probabilities ``truth`` (expected, or one-hot labels:
    then these are the realized metrics, as ``provenflow.modeling.training.evaluate`` scores them)."""
    out = {"accuracy": expected_accuracy(truth, predicted), "f1": expected_f1(truth, predicted)}
    auc = expected_roc_auc(truth, proba)
    if auc is not None:
        out["roc_auc"] = auc
    return out


def sampling_errors(reference: Reference, rows: int) -> dict[str, float]:
    """Each metric's sampling error on a window of ROWS rows: its spread over bootstrap samples of
    the reference (labels known), scaled from the sample size to ROWS by √(size/ROWS). Seeded: the
    same reference and size give the same errors."""
    size, spread = reference.bootstrap_spread
    scale = np.sqrt(size / rows)
    return {name: value * scale for name, value in spread.items()}


def estimate(reference: Reference, proba: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Estimated performance of a window of logged rows (raw ``proba`` in ``reference.classes``
    order, ``predicted`` as class indices), for each of ``accuracy``, ``f1`` and ``roc_auc``:

    - ``<metric>``: CBPE, which assumes the inputs moved but not what they mean (covariate shift);
    - ``<metric>_label_shift``: the same if instead the classes' prior moved (``prior_shifted``);
    - ``<metric>_low``/``<metric>_high``: both readings ± SAMPLING_ERROR_RANGE sampling errors of a
      window this size. Without labels the two kinds of shift cannot be told apart, so the band spans
      both: under a label shift it widens rather than claim the model is as good as before;

    and ``label_shift``: how far the window's class prior is from the reference's (total variation,
    0 to 1). ``roc_auc`` is left out when a class is expected in no row.
    """
    if len(proba) == 0:
        raise DataError("no logged predictions to estimate from; widen the window (--since)")
    calibrated = calibrate(reference.calibrators, proba)
    known = reference.label[reference.label >= 0]
    reference_prior = np.bincount(known, minlength=len(reference.classes)) / max(len(known), 1)
    prior, relabelled = prior_shifted(calibrated, reference_prior)
    covariate, label = _metrics(calibrated, proba, predicted), _metrics(relabelled, proba, predicted)
    errors = sampling_errors(reference, len(proba))
    out: dict[str, float] = {}
    for name, value in covariate.items():
        other = label.get(name, value)
        error = SAMPLING_ERROR_RANGE * errors.get(name, 0.0)
        out[name] = value
        out[f"{name}_low"] = max(0.0, min(value, other) - error)
        out[f"{name}_high"] = min(1.0, max(value, other) + error)
        out[f"{name}_label_shift"] = other
    out["label_shift"] = float(np.abs(prior - reference_prior).sum() / 2)
    return out


def window_of(reference: Reference, predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(raw probabilities, predicted class indices) of the prediction log's rows that have them."""
    columns = [f"proba_{c}" for c in reference.classes]
    missing = [c for c in [*columns, "prediction"] if c not in predictions.columns]
    if missing:
        raise EstimationUnavailable(
            f"the prediction log has no {', '.join(missing)} column(s): no predictions with "
            "probabilities were logged for these rows, so nothing can be estimated from them"
        )
    index = {c: i for i, c in enumerate(reference.classes)}
    predicted = predictions["prediction"].astype(str).map(index).fillna(-1)
    proba = predictions[columns].to_numpy(dtype=np.float64)
    usable = (predicted.to_numpy() >= 0) & np.isfinite(proba).all(axis=1)
    return proba[usable], predicted.to_numpy(dtype=np.int64)[usable]


# -- the ledger side ---------------------------------------------------------------------------


def store_reference(workspace: Workspace, reference: Reference) -> Digest:
    """Put the reference in the store (before the run's record names it)."""
    return workspace.store.put_bytes(reference.to_bytes()).digest


def load_reference(workspace: Workspace, version: Versioned | str) -> Reference:
    """The reference of a model version (a ledger row, or a ``NAME@VERSION|ALIAS`` ref) from the
    run(s) that produced its bytes; ``EstimationUnavailable`` saying why when there is none."""
    from sqlalchemy import select

    from provenflow.digest import Digest
    from provenflow.ledger import models as m
    from provenflow.ledger.refs import resolve_model

    with workspace.ledger.reader() as session:
        # By its ref, so a row from a closed session or the drift monitor's ``Monitored`` works too.
        row = resolve_model(session, version if isinstance(version, str) else version.ref)
        ref, task, model_hash, version_id = row.ref, row.task, row.hash, row.id
        if task != "classification":
            raise EstimationUnavailable(
                f"{ref} is a {task or 'non-classification'} model; estimated performance needs a "
                "classifier's probabilities (for a regressor, wait for the labels: realized performance)"
            )
        producers = select(m.RunIO.run_id).where(
            m.RunIO.model_version_id == version_id, m.RunIO.direction == "output"
        )
        hashes = list(
            session.scalars(
                select(m.RunIO.hash)
                .where(m.RunIO.run_id.in_(producers), m.RunIO.kind == CALIBRATION_KIND,
                       m.RunIO.direction == "output")
                .order_by(m.RunIO.id.desc())
            )
        )  # fmt: skip
    for digest in hashes:
        reference = Reference.from_bytes(workspace.store.read_bytes(Digest(digest)))
        if reference.model_hash == model_hash:
            return reference
    raise EstimationUnavailable(
        f"{ref} has no held-out probabilities recorded: its model run predates performance "
        "estimation, or its estimator has no predict_proba; retrain it (provenflow model-run) to "
        "estimate its performance before labels arrive"
    )


def estimate_for(
    workspace: Workspace, model_version: Versioned | str, predictions: pd.DataFrame
) -> dict[str, float] | None:
    """Estimated performance of ``predictions`` (the prediction log's frame of one model version:
    ``prediction`` and one ``proba_<class>`` column per class, as ``read_predictions`` returns it).

    ``model_version`` is a ``NAME@VERSION|ALIAS`` ref, or anything with that ``ref``: a ledger
    ``ModelVersion`` row (what ``resolve_model`` returns), the drift monitor's ``Monitored``.

    Returns, for METRIC in accuracy, f1 and roc_auc: ``METRIC``, ``METRIC_low``, ``METRIC_high``,
    ``METRIC_label_shift``; and ``label_shift`` (see ``estimate``). Compare a realized metric with
    its low–high band, not with the point estimate alone; ``roc_auc*`` is left out when a class is
    expected in no row. None when there is nothing to estimate: a regressor, a version whose run
    recorded no held-out probabilities (trained before this existed, or without ``predict_proba``),
    a log without probabilities, or no usable rows; ``load_reference`` and ``window_of`` say why
    instead. A recorded reference whose stored object is missing or damaged raises
    (``StoreError``/``IntegrityError``): that is damage to repair, not a model without an estimate."""
    try:
        reference = load_reference(workspace, model_version)
        proba, predicted = window_of(reference, predictions)
    except EstimationUnavailable:
        return None
    if len(proba) == 0:
        return None
    return estimate(reference, proba, predicted)


def estimated_performance(
    workspace: Workspace, model: str, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """What ``provenflow performance`` shows: ``{"model": NAME@N, "rows", "since", "until",
    "estimated": {...} | None, "reason": why there is no estimate | None}`` for MODEL's
    (NAME@VERSION|ALIAS) predictions logged in [SINCE, UNTIL)."""
    from provenflow.ledger.refs import resolve_model
    from provenflow.serving.predictlog.reading import read_predictions

    with workspace.ledger.reader() as session:
        version = resolve_model(session, model)
        name, number, ref = version.name, version.version, version.ref
    frame, _ = read_predictions(workspace.store.url, name, number, since=since, until=until)
    out: dict[str, Any] = {
        "model": ref,
        "rows": len(frame),
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "estimated": None,
        "reason": None,
    }
    try:
        reference = load_reference(workspace, ref)
        if frame.empty:
            raise EstimationUnavailable(
                f"no predictions of {ref} were logged in this window; widen it (--since)"
            )
        proba, predicted = window_of(reference, frame)
        if len(proba) == 0:
            raise EstimationUnavailable(
                f"none of the {len(frame)} logged rows has probabilities of {ref}'s classes"
            )
    except EstimationUnavailable as exc:
        out["reason"] = str(exc)
        return out
    out["estimated"] = estimate(reference, proba, predicted)
    out["estimated_rows"] = len(proba)
    return out
