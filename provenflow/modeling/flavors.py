"""What a model object the team trained itself is, read from the object: its flavor, its task
and classes, and the input signature its example rows give.

Flavors, chosen from the object (duck-typed, so XGBoost and LightGBM need not be installed to be
recognised):

    sklearn   a scikit-learn estimator or pipeline, or anything with its API (``get_params`` and
              ``predict``: XGBClassifier, LGBMRegressor, ...)
    onnx      an ``onnx.ModelProto``: served through ``OnnxModel`` (onnxruntime)
    python    any object with ``predict(DataFrame)``, and optionally ``predict_proba``

All three are stored the same way (a pickle, with the project's code when it needs some), so
serving, the promotion gate, drift and CBPE treat them as they treat a model-run model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from provenflow.data.datasets import is_numeric
from provenflow.data.dates import holds_date_objects
from provenflow.errors import TrainingError
from provenflow.modeling.training import plain_value

TASKS = ("classification", "regression")


class OnnxModel:
    """An ONNX graph that predicts from a DataFrame: one input per column (named like it), or a
    single 2-D float input fed every column in the order of the example rows."""

    def __init__(self, graph: bytes, columns: list[str]) -> None:
        self.graph = graph
        self.columns = list(columns)
        self._session: Any = None

    def __getstate__(self) -> dict:
        return {"graph": self.graph, "columns": self.columns}

    def __setstate__(self, state: dict) -> None:
        self.graph, self.columns, self._session = state["graph"], state["columns"], None

    def _run(self, frame: pd.DataFrame) -> list:
        import onnxruntime as ort

        if self._session is None:
            self._session = ort.InferenceSession(self.graph, providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        if len(inputs) == 1 and inputs[0].name not in frame.columns:
            feed = {inputs[0].name: frame[self.columns].to_numpy(dtype=np.float32)}
        else:
            feed = {}
            for spec in inputs:
                values = frame[spec.name].to_numpy()
                dtype = np.float32 if "float" in spec.type else (np.int64 if "int" in spec.type else object)
                feed[spec.name] = values.astype(dtype).reshape(-1, 1)
        return self._session.run(None, feed)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self._run(frame)[0]).ravel()


@dataclass(frozen=True)
class Described:
    flavor: str
    model: Any  # what is pickled (an ONNX graph wrapped in OnnxModel)
    estimator: str  # module.Class, as model-run records its estimator
    task: str
    classes: list[Any] | None
    params: dict[str, Any]


def flavor_of(model: Any) -> str:
    if type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx"):
        return "onnx"
    if not callable(getattr(model, "predict", None)):
        raise TrainingError(
            f"cannot log a {type(model).__module__}.{type(model).__name__} as a model: it has no "
            "predict(DataFrame) method; log a scikit-learn estimator or pipeline, an ONNX model, or an "
            "object with predict (and optionally predict_proba)"
        )
    if callable(getattr(model, "get_params", None)):
        return "sklearn"
    return "python"


def describe(model: Any, example: pd.DataFrame, task: str | None = None) -> Described:
    """The flavor, task and classes of MODEL, checked by predicting on EXAMPLE."""
    if not isinstance(example, pd.DataFrame) or example.empty:
        raise TrainingError(
            "input_example must be a pandas DataFrame with at least one row of the model's inputs"
        )
    if task is not None and task not in TASKS:
        raise TrainingError(f"task {task!r} is not one of {', '.join(TASKS)}")
    flavor = flavor_of(model)
    if flavor == "onnx":
        model = OnnxModel(model.SerializeToString(), [str(c) for c in example.columns])
    kind = type(model)
    try:
        predicted = np.asarray(model.predict(example.head(5)))
    except Exception as exc:  # any failure of the team's code says the same thing
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise TrainingError(
            f"the model ({kind.__name__}) cannot predict on input_example ({type(exc).__name__}: {first}); "
            "pass rows with the columns and types the model was trained on"
        ) from None
    classes = getattr(model, "classes_", None)
    task = task or _task_of(model, predicted, classes)
    params = hyper_parameters(model) if flavor == "sklearn" else {}
    estimator = f"{kind.__module__}.{kind.__qualname__}"
    return Described(
        flavor, model, estimator, task, _classes(classes) if task == "classification" else None, params
    )


def hyper_parameters(model: Any) -> dict[str, Any]:
    """MODEL's hyper-parameters as ``set_params`` names them: a pipeline's or a column transformer's
    steps each as ``step__param`` (``gradientboostingclassifier__max_depth: 3``), not the steps' repr."""
    try:
        deep = model.get_params(deep=True)
    except Exception:  # a duck-typed get_params that wants arguments: no params, still a model
        return {}
    return {k: plain_value(v) for k, v in deep.items() if not _is_part(v)}


PLACEHOLDERS = ("drop", "passthrough")  # a step scikit-learn lets stand for no estimator


def _is_part(value: Any) -> bool:
    """An estimator inside a composite, or its list of (name, estimator) steps: their own
    parameters are listed under their names."""
    if callable(getattr(value, "get_params", None)) and not isinstance(value, type):
        return True
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(
            isinstance(step, tuple) and len(step) >= 2 and (_is_part(step[1]) or step[1] in PLACEHOLDERS)
            for step in value
        )
    )


def _task_of(model: Any, predicted: np.ndarray, classes: Any) -> str:
    estimator_type = getattr(model, "_estimator_type", None)
    if estimator_type in ("classifier", "regressor"):
        return "classification" if estimator_type == "classifier" else "regression"
    try:
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(model):
            return "classification"
        if is_regressor(model):
            return "regression"
    except Exception:  # not an estimator sklearn can read tags from
        pass
    if classes is not None or callable(getattr(model, "predict_proba", None)):
        return "classification"
    if predicted.dtype.kind == "f":
        return "regression"
    return "classification"


def signature_of(example: pd.DataFrame, target: str | None, target_dtype: str | None, task: str,
                 classes: list | None) -> dict:  # fmt: skip
    """The served model's inputs, in the model-run signature's form (name, dtype, kind, role)."""
    inputs = []
    for column in example.columns:
        series = example[column]
        if pd.api.types.is_datetime64_any_dtype(series) or holds_date_objects(series):
            kind = "datetime"  # served as date strings, checked as dates; not compared for drift
        elif is_numeric(series) and not pd.api.types.is_bool_dtype(series):
            kind = "numeric"
        else:
            kind = "categorical"
        entry = {"name": str(column), "dtype": str(series.dtype), "kind": kind, "role": kind}
        if kind == "datetime":  # sent as ISO 8601 (JSON has no dates), given to the model as it saw them
            entry.update(format="ISO8601", values=date_values(series))
        inputs.append(entry)
    signature: dict = {
        "inputs": inputs,
        "target": {"name": target, "dtype": target_dtype},
        "task": task,
        "left_out": {},
    }
    if classes is not None:
        signature["classes"] = classes
    return signature


def date_values(series: pd.Series) -> str:
    """The form a model was given a date column in: datetime64, or date or datetime objects."""
    import datetime

    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime64"
    present = series.dropna()
    return "datetime" if len(present) and all(isinstance(v, datetime.datetime) for v in present[:100]) else "date"


def _classes(values: Any) -> list[Any] | None:
    return None if values is None else [plain_value(v) for v in values]

