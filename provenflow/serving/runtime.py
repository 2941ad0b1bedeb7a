"""What serves a prediction: the fitted scikit-learn pipeline, and what both runtimes share.

The ONNX runtime (``provenflow.serving.onnx``) answers the same ``Predictor`` protocol, so the
app never cares which one it holds. Both read facts about the fitted pipeline from here: which
value the imputers fill in for each column, and which Python types the categories have.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from provenflow.serving.inputs import Batch, Feature

Runtime = str  # "onnx" | "sklearn"


@dataclass(frozen=True)
class Predictions:
    """One label (or value, for regressors) per row; class probabilities when the model has them."""

    labels: np.ndarray
    probabilities: np.ndarray | None = None

    @functools.cached_property
    def arrow_labels(self) -> Any:
        """The labels as one Arrow array, made once for the prediction log's frame and an Arrow answer."""
        from provenflow.serving.predictlog.wal import arrow_array

        return arrow_array(self.labels)


class Predictor(Protocol):
    runtime: Runtime

    def predict(self, batch: Batch) -> Predictions: ...


class SklearnPredictor:
    """The pickled pipeline itself: slower per row, but serves any estimator."""

    runtime: Runtime = "sklearn"

    def __init__(self, pipeline: Any, features: tuple[Feature, ...]) -> None:
        self.pipeline = pipeline
        self.names = [f.name for f in features]
        self.has_proba = has_probabilities(pipeline)
        self.dates = {f.name: f.date_values for f in features if f.date_values}

    def predict(self, batch: Batch) -> Predictions:
        frame = pd.DataFrame({name: batch.columns[name] for name in self.names}, copy=False)
        for name, form in self.dates.items():  # what the team's model was trained on, not the strings
            frame[name] = as_dates(frame[name], form)
        labels = np.asarray(self.pipeline.predict(frame))
        if labels.dtype.kind in "US":  # a plain Python model's list of str: numpy's fixed-width strings,
            labels = labels.astype(object)  # which JSON and the prediction log take as Python strings
        proba = np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64) if self.has_proba else None
        return Predictions(labels, proba)


def as_dates(values: pd.Series, form: str) -> pd.Series:
    """ISO 8601 strings (checked by the request's validation) as the values a team's model saw in
    training: datetime64, or ``datetime.date``/``datetime`` objects (a Parquet or SQL DATE column).
    Before, the strings reached the model as they were sent."""
    from provenflow.data.dates import parse_dates

    parsed = parse_dates(values.astype(object), "ISO8601")
    if form == "datetime64":
        return parsed.astype("datetime64[ns]")
    objects = [None if pd.isna(t) else t.date() if form == "date" else t.to_pydatetime() for t in parsed]
    return pd.Series(objects, index=values.index, dtype=object)


def has_probabilities(pipeline: Any) -> bool:
    # Pipelines expose predict_proba only when their estimator does (SVC needs probability=True).
    return hasattr(pipeline, "predict_proba")


def classes_of(pipeline: Any) -> list[Any] | None:
    classes = getattr(pipeline, "classes_", None)
    return None if classes is None else [_plain(c) for c in classes]


def features_of_signature(signature: dict, types: dict[str, tuple[type, ...]]) -> tuple[Feature, ...]:
    """The model's inputs in signature order, with the category types training saw
    (``category_types(pipeline)``, or ``pipeline_facts`` read back from a bundle)."""
    features = []
    for entry in signature["inputs"]:
        name, kind = str(entry["name"]), entry["kind"]
        if kind not in ("numeric", "categorical", "datetime"):
            raise ValueError(
                f"input {name!r} has kind {kind!r}; expected 'numeric', 'categorical' or 'datetime'"
            )
        features.append(Feature(name, kind, types.get(name, (str,)), entry.get("format"), entry.get("values")))
    return tuple(features)


def column_steps(pipeline: Any) -> list[tuple[str, Any, list[str]]]:
    """The fitted (name, transformer, columns) triples of the pipeline's ColumnTransformer, or []."""
    prepare = pipeline.steps[0][1] if hasattr(pipeline, "steps") else None
    fitted = getattr(prepare, "transformers_", None)
    if fitted is None:
        return []
    return [(name, step, list(cols)) for name, step, cols in fitted if name != "remainder"]


def input_fills(pipeline: Any) -> dict[str, Any]:
    """The value each column's leading SimpleImputer puts in place of a missing value.

    The ONNX path imputes before the graph (ONNX string tensors cannot hold a missing value,
    and onnxruntime's Imputer takes no doubles), using exactly the statistics training fitted.
    """
    from sklearn.impute import SimpleImputer

    fills: dict[str, Any] = {}
    for _, step, columns in column_steps(pipeline):
        first = step.steps[0][1] if hasattr(step, "steps") else step
        if isinstance(first, SimpleImputer) and not first.add_indicator:
            fills.update({c: _plain(v) for c, v in zip(columns, first.statistics_, strict=True)})
    return fills


def category_types(pipeline: Any) -> dict[str, tuple[type, ...]]:
    """For each encoded column (one-hot, or ordinal codes for native categories), the Python
    types of its fitted categories."""
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    out: dict[str, tuple[type, ...]] = {}
    for _, step, columns in column_steps(pipeline):
        encoder = step.steps[-1][1] if hasattr(step, "steps") else step
        if isinstance(encoder, (OneHotEncoder, OrdinalEncoder)):
            for column, categories in zip(columns, encoder.categories_, strict=True):
                kinds = {type(_plain(c)) for c in categories if not _missing(c)}
                out[column] = tuple(sorted(kinds or {str}, key=lambda t: t.__name__))
    return out


# The facts above, as JSON a bundle can carry, so an ONNX server needs no pickle at all.
_TYPES = {t.__name__: t for t in (str, int, float, bool)}


def pipeline_facts(pipeline: Any) -> dict[str, Any]:
    return {
        "fills": input_fills(pipeline),
        "category_types": {c: [t.__name__ for t in ts] for c, ts in category_types(pipeline).items()},
        "probabilities": has_probabilities(pipeline),
    }


def category_types_of(facts: dict[str, Any]) -> dict[str, tuple[type, ...]]:
    return {c: tuple(_TYPES[n] for n in names) for c, names in facts["category_types"].items()}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
