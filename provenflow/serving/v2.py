"""The Open Inference Protocol (V2, as KServe, MLServer and Triton speak it): request and answer bodies.

Columnar: one input tensor per feature of the recorded signature, named like it, shape ``[n]`` or
``[n, 1]``, ``BYTES`` for categorical and date features, ``FP64``/``FP32``/``INT*``/``UINT*`` for
numeric ones; values are checked exactly like /predict's (``inputs._checked``). The answer has a
``predictions`` output (``BYTES`` for string classes, ``FP64`` for regressors) and, for classifiers
with probabilities, ``probabilities`` (``FP64``, shape ``[n, classes]``, in the order of the model
metadata's ``parameters.classes``).

The binary tensor data extension (as Triton and MLServer speak it): with an
``Inference-Header-Content-Length: N`` header, the body's first N bytes are the JSON request and the
rest the raw tensors, in input order, each input that has ``parameters.binary_data_size`` taking that
many bytes (numbers little-endian, ``BYTES`` as a 4-byte length before each element). Outputs are
answered the same way when the request asks (``parameters.binary_data_output`` or an output's
``parameters.binary_data``): the answer then carries the header too. Why: a 10,000-row batch spent
most of its time in JSON (~19 of 22 ms); raw float64 columns are read in place.
"""

from __future__ import annotations

import struct
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

_DTYPES = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4", "INT16": "<i2",
           "INT8": "i1", "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2", "UINT8": "u1"}  # fmt: skip
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
    header_length: int | None = None,
) -> tuple[Batch, str | None, dict[str, bool] | None]:
    """A V2 infer request as a checked batch, the request's ``id`` (echoed in the answer), and the
    outputs it asks for (name → binary; None: all, as JSON). ``header_length``: the
    ``Inference-Header-Content-Length`` (binary tensors follow the JSON header).

    The JSON is parsed within a budget (``budget.loads_within``): no more values than ``max_rows``
    rows can hold (two per value: a comma, and the bracket of an ``[n, 1]`` row). Triton's client
    writes a missing FP64 value as NaN (Python's json.dumps), which is not JSON: it reads as null."""
    binary = None
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise RequestError(
                [
                    Problem(
                        f"Inference-Header-Content-Length is {header_length}, but the body has {len(body)} bytes"
                    )
                ],
                400,
            )
        binary = memoryview(body)[header_length:]
        body = bytes(memoryview(body)[:header_length])
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
    at = 0  # where the next binary tensor begins
    for i, tensor in enumerate(payload["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            problems.append(Problem(f"input {i} is not a tensor object with a 'name'", field=f"inputs[{i}]"))
            continue
        name = tensor["name"]
        parameters = tensor.get("parameters")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            try:
                tensor = {**tensor, "data": _binary_tensor(tensor, size, binary, at)}
            except RequestError as exc:
                raise RequestError([Problem(exc.problems[0].message, field=name)], 400) from None
            at += size
        problem = _tensor_problem(tensor, by_name.get(name))
        if problem:
            problems.append(Problem(problem, field=name))
            continue
        data = tensor["data"]
        if len(tensor["shape"]) == 2 and len(data) and isinstance(data[0], list):  # [[v], [v], ...]
            data = [row[0] if isinstance(row, list) and len(row) == 1 else row for row in data]
        columns[name] = data
    if binary is not None and at != len(binary):
        problems.append(
            Problem(f"the inputs declare {at} bytes of binary data, but {len(binary)} follow the header")
        )
    if problems:
        raise RequestError(problems, 400)
    raw, rows = _from_columns(columns, features, ignored)  # missing and unknown inputs, named
    _check_rows(rows, max_rows)
    request_id = payload.get("id")
    batch = _checked(raw, rows, features)
    return batch, request_id if isinstance(request_id, str) else None, _requested_outputs(payload)


def _requested_outputs(payload: dict) -> dict[str, bool] | None:
    """Output name → whether to send it binary; None when the request names no outputs."""
    parameters = payload.get("parameters")
    everything_binary = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    outputs = payload.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return {"*": True} if everything_binary else None
    asked = {}
    for i, output in enumerate(outputs):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise RequestError(
                [Problem(f"output {i} is not an object with a 'name'", field=f"outputs[{i}]")], 400
            )
        own = output.get("parameters")
        flag = own.get("binary_data") if isinstance(own, dict) else None
        asked[output["name"]] = everything_binary if flag is None else flag is True
    return asked


def _binary_tensor(tensor: dict, size: Any, binary: memoryview | None, at: int) -> Any:
    """One input's binary data as a float64 array (numbers) or a list of strings (``BYTES``)."""
    if binary is None:
        raise RequestError(
            [Problem("binary_data_size without an Inference-Header-Content-Length header")], 400
        )
    if not isinstance(size, int) or size < 0 or at + size > len(binary):
        raise RequestError([Problem(f"binary_data_size {size!r} runs past the end of the body")], 400)
    raw = binary[at : at + size]
    shape = tensor.get("shape")
    count = shape[0] if isinstance(shape, list) and shape and isinstance(shape[0], int) else -1
    kind = tensor.get("datatype")
    if kind in _DTYPES:
        dtype = np.dtype(_DTYPES[kind])
        if size % dtype.itemsize or size // dtype.itemsize != count:
            raise RequestError(
                [Problem(f"{size} bytes of {kind} are not the {count} values its shape {shape!r} says")], 400
            )
        return np.frombuffer(raw, dtype=dtype).astype(np.float64)  # one copy, native float64
    if kind == "BYTES":
        values, offset, data = [], 0, bytes(raw)
        try:
            while offset < size:
                (length,) = struct.unpack_from("<I", data, offset)
                end = offset + 4 + length
                if end > size:
                    raise ValueError("an element runs past its tensor")
                values.append(data[offset + 4 : end].decode())
                offset = end
        except (struct.error, ValueError) as exc:
            raise RequestError([Problem(f"its BYTES data is malformed ({exc})")], 400) from None
        return values
    raise RequestError([Problem(f"datatype {kind!r} has no binary form here")], 400)


def _tensor_problem(tensor: dict, feature: Feature | None) -> str | None:
    name, kind = tensor["name"], tensor.get("datatype")
    if feature is None:
        return None  # _from_columns names unknown inputs with a did-you-mean
    shape, data = tensor.get("shape"), tensor.get("data")
    if not isinstance(data, (list, np.ndarray)):
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
    name: str,
    version: int,
    predictions: Predictions,
    request_id: str,
    given_id: str | None,
    requested: dict[str, bool] | None = None,
) -> tuple[bytes, int | None]:
    """The answer's body, and the length of its JSON header when binary outputs follow it."""
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
    if requested is not None and "*" not in requested:
        unknown = sorted(set(requested) - {o["name"] for o in outputs})
        if unknown:
            raise RequestError([Problem(f"unknown output {unknown[0]!r}; this model answers "
                                        f"{', '.join(o['name'] for o in outputs)}", field=unknown[0])], 400)  # fmt: skip
        outputs = [o for o in outputs if o["name"] in requested]
    tails = []
    for output in outputs:
        if requested is not None and requested.get(output["name"], requested.get("*", False)):
            raw = _raw(output["datatype"], output.pop("data"))
            output["parameters"] = {"binary_data_size": len(raw)}
            tails.append(raw)
    out = {"model_name": name, "model_version": str(version), "id": given_id or request_id,
           "parameters": {"request_id": request_id}, "outputs": outputs}  # fmt: skip
    head = orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)
    if not tails:
        return head, None
    return b"".join([head, *tails]), len(head)


def _raw(kind: str, data: Any) -> bytes:
    if kind == "BYTES":
        encoded = [str(v).encode() for v in data]
        return b"".join(struct.pack("<I", len(v)) + v for v in encoded)
    if kind == "BOOL":
        return np.asarray(data, dtype=np.bool_).tobytes()
    return np.ascontiguousarray(data, dtype=_DTYPES[kind]).tobytes()
