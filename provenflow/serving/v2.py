"""The Open Inference Protocol (V2, as KServe, MLServer and Triton speak it): request and answer bodies.

Columnar: one input tensor per feature of the recorded signature, named like it, shape ``[n]`` or
``[n, 1]``, ``BYTES`` for categorical and date features, ``FP64``/``FP32``/``INT*``/``UINT*`` for
numeric ones; values are checked exactly like /predict's (``inputs._checked``). The answer has a
``predictions`` output (``BYTES`` for string classes, ``FP64`` for regressors) and, for classifiers
with probabilities, ``probabilities`` (``FP64``, shape ``[n, classes]``, in the order of the model
metadata's ``parameters.classes``). JSON tensors only: the binary tensor extension
(``Inference-Header-Content-Length``) is refused with a 400 that says to send JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from provenflow.serving.budget import loads_within
from provenflow.serving.inputs import (
    Batch,
    Feature,
    Problem,
    RequestError,
    _check_rows,
    _checked,
    _from_columns,
)
from provenflow.serving.runtime import Predictions

NUMERIC_TYPES = frozenset({"FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32",
                           "UINT16", "UINT8"})  # fmt: skip


def datatype(feature: Feature) -> str:
    return "FP64" if feature.kind == "numeric" else "BYTES"


def model_metadata(model: Any) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the signature as V2 tensors."""
    meta = model.metadata
    outputs = [{"name": "predictions", "datatype": "BYTES" if meta.classes else "FP64", "shape": [-1]}]
    if meta.classes and getattr(model.predictor, "has_proba", False):  # NearestCentroid, SVC: none
        outputs.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, len(meta.classes)]})
    return {
        "name": meta.name,
        "versions": [str(meta.version)],
        "platform": f"provenflow-{model.runtime}",
        "inputs": [{"name": f.name, "datatype": datatype(f), "shape": [-1]} for f in model.features],
        "outputs": outputs,
        "parameters": {
            "hash": meta.hash,
            "task": meta.task or "",
            "classes": orjson.dumps(meta.classes).decode(),
        },
    }


def parse_infer(
    body: bytes | bytearray,
    features: tuple[Feature, ...],
    max_rows: int,
    ignored: frozenset[str] = frozenset(),
) -> tuple[Batch, str | None]:
    """A V2 infer request as a checked batch, and the request's ``id`` (echoed in the answer).

    Parsed within a budget (``budget.loads_within``): no more values than ``max_rows`` rows can hold
    (two per value: a comma, and the bracket of an ``[n, 1]`` row). Triton's client writes a missing
    FP64 value as NaN (Python's json.dumps), which is not JSON: it reads as null, the missing value."""
    if not body or body.isspace():
        raise RequestError([Problem("the request body is empty; expected a V2 infer request")], 400)
    width = len(features) + len(ignored)
    payload = loads_within(
        body, max_rows * (2 * width + 2) + 64, f"{max_rows} rows of {width} inputs", nan_is_null=True
    )
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise RequestError(
            [Problem('expected a V2 infer request {"inputs": [{"name", "shape", "datatype", "data"}]}')], 400
        )
    by_name = {f.name: f for f in features}
    columns: dict[str, Any] = {}
    problems: list[Problem] = []
    for i, tensor in enumerate(payload["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            problems.append(Problem(f"input {i} is not a tensor object with a 'name'", field=f"inputs[{i}]"))
            continue
        name = tensor["name"]
        problem = _tensor_problem(tensor, by_name.get(name))
        if problem:
            problems.append(Problem(problem, field=name))
            continue
        data = tensor["data"]
        if len(tensor["shape"]) == 2 and data and isinstance(data[0], list):  # [[v], [v], ...]
            data = [row[0] if isinstance(row, list) and len(row) == 1 else row for row in data]
        columns[name] = data
    if problems:
        raise RequestError(problems, 400)
    raw, rows = _from_columns(columns, features, ignored)  # missing and unknown inputs, named
    _check_rows(rows, max_rows)
    request_id = payload.get("id")
    return _checked(raw, rows, features), request_id if isinstance(request_id, str) else None


def _tensor_problem(tensor: dict, feature: Feature | None) -> str | None:
    name, kind = tensor["name"], tensor.get("datatype")
    if feature is None:
        return None  # _from_columns names unknown inputs with a did-you-mean
    parameters = tensor.get("parameters") or {}
    if isinstance(parameters, dict) and "binary_data_size" in parameters:
        return f"input {name!r} uses the binary tensor extension; send JSON data (tritonclient: binary_data=False)"
    shape, data = tensor.get("shape"), tensor.get("data")
    if not isinstance(data, list):
        return f"input {name!r} has no 'data' list"
    if not (isinstance(shape, list) and 1 <= len(shape) <= 2 and all(type(d) is int for d in shape)
            and (len(shape) == 1 or shape[1] == 1)):  # fmt: skip
        return f"input {name!r} has shape {shape!r}; send one column per feature, shape [n] or [n, 1]"
    if shape[0] != len(data):
        return f"input {name!r} has shape {shape!r} but {len(data)} values"
    if feature.kind == "numeric" and kind not in NUMERIC_TYPES:
        return f"input {name!r} is numeric; send datatype FP64 (or another number type), not {kind!r}"
    if feature.kind != "numeric" and kind != "BYTES":
        return f"input {name!r} is {feature.kind}; send datatype BYTES (strings), not {kind!r}"
    return None


def infer_answer(
    name: str, version: int, predictions: Predictions, request_id: str, given_id: str | None
) -> bytes:
    labels = predictions.labels
    n = len(labels)
    if labels.dtype == object:
        kind, data = "BYTES", [str(v) for v in labels.tolist()]
    elif labels.dtype.kind == "f":
        kind, data = "FP64", np.ascontiguousarray(labels, dtype=np.float64)
    elif labels.dtype.kind == "b":
        kind, data = "BOOL", labels.tolist()
    else:
        kind, data = "INT64", np.ascontiguousarray(labels, dtype=np.int64)
    outputs = [{"name": "predictions", "datatype": kind, "shape": [n], "data": data}]
    if predictions.probabilities is not None:
        probabilities = np.ascontiguousarray(predictions.probabilities, dtype=np.float64)
        outputs.append({"name": "probabilities", "datatype": "FP64", "shape": list(probabilities.shape),
                        "data": probabilities.reshape(-1)})  # fmt: skip
    out = {"model_name": name, "model_version": str(version), "id": given_id or request_id,
           "parameters": {"request_id": request_id}, "outputs": outputs}  # fmt: skip
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)
