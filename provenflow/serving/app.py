"""The HTTP model server: /predict, /health, /ready, /metadata, /metrics (Prometheus, ``metrics.py``)
and the Open Inference Protocol V2 (``v2.py``).

Hot-path choices, each measured: the body is read as bytes and parsed with orjson (a pydantic
model per row halved throughput); responses are orjson bytes, not FastAPI's encoder; ONNX requests
with small bodies (``INLINE_BYTES``, a few hundred rows) are parsed, predicted and logged on the
event loop (tens of microseconds, less than a thread hand-off), while scikit-learn and anything
bigger run in the thread pool so /health and /ready keep answering during a slow request.

Tail latency, measured with ``bench/serving_tail.py`` (one-row requests at a fixed 500 req/s, an
open-loop generator in its own process, latency from the scheduled send; 2 shared cores):

- The issue's 218 ms p99 was the cores, not the server: other work kept both busy. There even a
  trivial server shows a p99 of 3-6 ms to the same generator; with server and generator scheduled
  first (``--priority rt``), the generator's floor is 0.8-1.1 ms p99 and this server's 1.4-2.3 ms.
- ``gc.freeze()`` once loaded (in the lifespan): a full collection of what loading leaves
  (~69,000 objects) took ~80 ms, a pause every request in flight waits for; after it, ~0.
- The write-ahead append (one ``writev``, ~10 µs; never above 0.07 ms in 10,000 paced writes here)
  changes neither throughput (wrk: 2,549-2,611 req/s with it, 2,559-2,630 without, interleaved)
  nor p99; it stays per request, before the response.
- Segments are built in a child process (``predictlog/builder.py``) from the sealed write-ahead
  file; the writer thread only stores the bytes it sends back. Built in the writer thread, a
  5,000-request segment was ~30 ms of GIL-holding numpy/arrow calls every 10 s, which the event loop
  waited out: that was what the worst 0.1% waited for (2026-12-06, ``--priority rt``, 20 s runs
  paired on the same bundle, load 8-10: p99.9 15-19 ms with segments written, 2.9-3.3 ms with none
  written during the run). With the child (``--trees main,this --rounds 3 --priority rt``, load
  5.4-6.7, generator floor p99.9 3.2 ms): p99.9 3.1 / 3.5 / 6.4 ms against main's 8.0 / 10.5 /
  12.2 ms. Not the collector: gen0/gen2 thresholds raised to 100,000/1,000 after ``gc.freeze()``
  changed nothing measurable.
- Not kept, measured no better: uvloop + httptools against asyncio + h11 (same throughput: the
  ~400 µs of CPU per request are FastAPI/Starlette and the model, not the protocol), a 1 ms
  GIL switch interval. ``--workers N`` (``run.py``) adds processes for throughput.

Hostile requests: only ``application/json`` and Arrow IPC streams (``arrow.py``) are accepted (415
otherwise: a browser page can POST text/plain or a form to any origin without a CORS preflight). The body is read as it arrives and
refused with 413 (connection closed, the rest never read) once it passes ``max_body_bytes``,
chunked or not. A big body is parsed in ~1 MB slices (``inputs.parse_request``), so the GIL, which
the event loop needs, is never held for long: /health answered in under 100 ms throughout a 60 MB,
100,000-row request (304 ms before), and the server's RSS grew by 88-102 MB for it (limit 2x 64 MB).

Every answered prediction is in the prediction log's write-ahead file before the response is sent
(a ``kill -9`` loses none); if the log cannot keep up (its store is down and the backlog is full)
/predict answers 503 rather than serve predictions nobody can audit, and /ready turns 503 so load
balancers stop sending traffic.
"""

from __future__ import annotations

import gc
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from provenflow.errors import first_line
from provenflow.serving import arrow
from provenflow.serving import feedback as fb
from provenflow.serving.budget import LargeBodies, loads_within
from provenflow.serving.bundle import LoadedModel
from provenflow.serving.inputs import Batch, RequestError, parse_request
from provenflow.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from provenflow.serving.metrics import ServerMetrics
from provenflow.serving.mirror import Mirror
from provenflow.serving.predictlog.log import PredictionLog, PredictionLogFull
from provenflow.serving.runtime import Predictions
from provenflow.serving.v2 import infer_answer, model_metadata, parse_infer

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 100_000
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
# /feedback's own limit: 100,000 labels (the default row limit) are ~4 MB of JSON.
DEFAULT_MAX_FEEDBACK_BYTES = 16 * 1024 * 1024
# Bodies over budget.LARGE_BYTES read, parsed and answered at once; the others wait, unread. One:
# on 2 cores a second parse only shares the same CPU, and doubles the memory (16 MB bodies, four
# at once: 51 MB RSS growth with one slot, 108 MB with two).
DEFAULT_LARGE_BODIES = 1
# ONNX requests with bodies up to this size (~100 records) are parsed, predicted, logged and
# serialized on the event loop: measured 80 µs for 1 row, 0.54 ms for 100 rows (13 KB), 1 ms for
# 200, against ~50-100 µs for a thread hand-off. Anything bigger, and every scikit-learn request,
# runs in the thread pool.
INLINE_BYTES = 16 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_JSON = "application/json"
_OCTETS = "application/octet-stream"



REFUSED_ROW_SEARCH = 200
"""A batch the model refuses is predicted again row by row, up to this many rows, to name the first
row it refuses alone (the error path only: the model said ValueError, the client wants to know where)."""


def _refused_row(model, batch: Batch) -> int | None:
    if batch.rows < 2 or batch.rows > REFUSED_ROW_SEARCH:
        return None
    for i in range(batch.rows):
        one = Batch({name: values[i : i + 1] for name, values in batch.columns.items()}, 1)
        try:
            model.predict(one)
        except ValueError:
            return i
        except Exception:  # not what the batch failed with: keep looking
            continue
    return None

def create_app(
    model: LoadedModel,
    log: PredictionLog | None,
    token: str | None,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    metrics_token: str | None = None,
    mirror: Mirror | None = None,
    max_feedback_bytes: int = DEFAULT_MAX_FEEDBACK_BYTES,
    large_bodies: int = DEFAULT_LARGE_BODIES,
) -> FastAPI:
    """The server for one loaded model. With ``token``, /predict, /metadata and the V2 model
    endpoints need ``Authorization: Bearer <token>``; /health, /ready and V2's health stay open for
    probes. /metrics is open (counts only, no inputs or predictions) unless ``metrics_token`` is set:
    Prometheus scrapes with its own credential, never the prediction token.
    The prediction log is started and closed (flushed) with the app's lifespan. With ``mirror``, every
    answered prediction request is also queued for a shadow challenger (``mirror.py``), never awaited."""
    prediction_log = log
    expected = f"Bearer {token}".encode() if token else None
    expected_metrics = f"Bearer {metrics_token}".encode() if metrics_token else None
    metrics = ServerMetrics(model, log, mirror)
    identity = {"name": model.metadata.name, "version": model.metadata.version, "hash": model.metadata.hash}
    classes = model.classes
    logged_ids = (
        fb.LoggedIds(prediction_log.fs, prediction_log.folder) if prediction_log is not None else None
    )
    feedback_folder = fb.beside(prediction_log.folder) if prediction_log is not None else ""
    # An fsync per request (~2.6 ms here) must not stall the event loop: then every request goes to the pool.
    inline_bytes = 0 if prediction_log is not None and prediction_log.fsync else INLINE_BYTES
    large = LargeBodies(large_bodies)  # budget.py: what a body may cost

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if prediction_log is not None:
            prediction_log.start()
        if mirror is not None:
            await mirror.start()
        # Everything loaded so far (libraries, the model, the app) lives as long as the server: out of
        # the collector's sight, a full collection scans only what requests left behind (~80 ms -> ~0).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if mirror is not None:
                await mirror.stop()
            if prediction_log is not None:
                await run_in_threadpool(prediction_log.close)

    app = FastAPI(
        title=f"provenflow model server: {model.metadata.ref}",
        lifespan=lifespan,
        docs_url=None,  # the docs page pulls scripts from a CDN: useless offline
        redoc_url=None,
        openapi_url=None,
    )

    def authorized(request: Request, wanted: bytes | None = expected) -> bool:
        if wanted is None:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, wanted)

    @app.get("/health")
    async def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/ready")
    async def ready() -> Response:
        if prediction_log is not None and prediction_log.error is not None:
            return _json({"status": "not ready", "reason": f"prediction log: {prediction_log.error}"}, 503)
        return _json({"status": "ready", "model": identity, "runtime": model.runtime})

    @app.get("/metadata")
    async def metadata(request: Request) -> Response:
        if not authorized(request):
            return _unauthorized()
        return _json(model.describe())

    @app.get("/metrics")
    async def prometheus_metrics(request: Request) -> Response:
        if not authorized(request, expected_metrics):
            return _unauthorized()
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    async def timed(endpoint: str, handling: Awaitable[Response]) -> Response:
        """HANDLING's response, its status and duration counted under ENDPOINT (/metrics)."""
        started = time.perf_counter()
        response = await handling
        metrics.observe(endpoint, response.status_code, time.perf_counter() - started)
        return response

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        return await timed("predict", _predict(request))

    async def _predict(request: Request) -> Response:
        if not authorized(request):
            return _unauthorized()
        request_id = _request_id(request)
        content_type = request.headers.get("content-type")
        arrow_in = arrow.is_arrow(content_type)
        if not arrow_in and not _is_json(content_type):
            # Only JSON or Arrow: a browser may POST text/plain or a form to any origin without a CORS preflight.
            message = f"send the body as JSON with 'Content-Type: application/json' (or as an Arrow IPC stream, '{arrow.CONTENT_TYPE}')"
            return _json({"error": message, "request_id": request_id}, 415)
        try:
            async with large.reading(request, max_body_bytes) as bodies:
                return await _predict_body(request, bodies, request_id, arrow_in)
        except RequestError as exc:  # too big: answer and close, leaving the rest of the body unread
            return _json({**exc.body(), "request_id": request_id}, exc.status, {"connection": "close"})

    async def _predict_body(
        request: Request, bodies: list[bytearray], request_id: str, arrow_in: bool
    ) -> Response:
        # The shadow challenger gets the same body, kept (not copied) until it is sent.
        kept = bodies[0] if mirror is not None else None
        form = Form(arrow_in=arrow_in, arrow_out=arrow.wants_arrow(request.headers.get("accept")))
        if model.runtime == "onnx" and len(bodies[0]) <= inline_bytes:
            response = answer(bodies, request_id, form)
        else:  # answer() drops the body once parsed: a 60 MB body is not kept through prediction
            response = await run_in_threadpool(answer, bodies, request_id, form)
        if kept is not None and response.status_code == 200:
            mirror.offer("/predict", kept, request_id, request.headers.get("authorization"),
                         (("content-type", arrow.CONTENT_TYPE if arrow_in else _JSON),))  # fmt: skip
        return response

    def answer(bodies: list[bytearray], request_id: str, form: Form) -> Response:
        """Parse, predict, log and serialize: on the event loop for small ONNX requests, else in a thread.
        ``form``: JSON, Arrow or the Open Inference Protocol's body (``v2.py``), and the answer's."""
        v2 = form.v2
        error = _v2_error if v2 else _error
        requested = None
        try:
            if v2:
                batch, given_id, requested = parse_infer(
                    bodies.pop(), model.features, max_rows, model.ignored, form.header_length
                )
            elif form.arrow_in:
                batch, given_id = (
                    arrow.parse_arrow(bodies.pop(), model.features, max_rows, model.ignored),
                    None,
                )
            else:
                batch, given_id = parse_request(bodies.pop(), model.features, max_rows, model.ignored), None
        except RequestError as exc:
            return error(exc.body(), exc.status, request_id)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            # A body the checks above did not foresee is still the client's: 400, never 500.
            logger.warning("unreadable request %s: %s: %s", request_id, type(exc).__name__, exc)
            return error(
                {"error": f"the request body could not be read ({type(exc).__name__})"}, 400, request_id
            )
        try:
            predictions = model.predict(batch)
        except ValueError as exc:
            # Values that passed the signature's checks and that the model itself refuses: a date a team's
            # own transformer cannot parse, a category an encoder was told to reject. The client's to fix
            # (scikit-learn and pandas raise ValueError for bad values), as a 422 from the checks would be.
            # One line, no traceback: a client sending bad values at full rate must not fill the log.
            row = _refused_row(model, batch)
            where = f"row {row}: " if row is not None else ""
            message = f"{where}the model refused this request's values (ValueError: {first_line(exc)})"
            logger.warning("request %s: %s", request_id, message)
            return error({"error": message}, 422, request_id)
        except Exception as exc:  # checked input should never get here; say so instead of a bare 500
            logger.exception("prediction failed for request %s", request_id)
            message = f"the model failed on this request ({type(exc).__name__}: {exc})"
            return error({"error": message}, 500, request_id)
        if prediction_log is not None:
            try:  # returns once the rows are in the write-ahead file: answered means logged
                prediction_log.append(request_id, batch, predictions)
            except PredictionLogFull as exc:
                logger.error("refusing predictions: %s", exc)
                return error({"error": str(exc)}, 503, request_id)
        metrics.predicted(predictions)
        if v2:
            try:
                body, head = infer_answer(
                    identity["name"], identity["version"], predictions, request_id, given_id, requested
                )
            except RequestError as exc:  # an unknown output asked for
                return error(exc.body(), exc.status, request_id)
            headers = {"x-request-id": request_id}
            if head is None:
                return Response(body, media_type=_JSON, headers=headers)
            headers["inference-header-content-length"] = str(head)
            return Response(body, media_type=_OCTETS, headers=headers)
        if form.arrow_out:
            body = arrow.answer_stream(identity, classes, predictions, request_id)
            return Response(body, media_type=arrow.CONTENT_TYPE, headers={"x-request-id": request_id})
        return Response(_answer(identity, classes, predictions, request_id), media_type=_JSON)

    @app.post("/feedback")
    async def feedback(request: Request) -> Response:
        """Ground-truth labels for answered rows (``feedback.py``): stored append-only beside the
        prediction log; ids with no logged prediction are stored too and counted as ``unknown``."""
        return await timed("feedback", _feedback(request))

    async def _feedback(request: Request) -> Response:
        if not authorized(request):
            return _unauthorized()
        if prediction_log is None or logged_ids is None:
            return _json(
                {"error": "this server keeps no prediction log, so labels have nothing to join"}, 409
            )
        if not _is_json(request.headers.get("content-type")):
            return _json({"error": "send the labels as JSON with 'Content-Type: application/json'"}, 415)
        try:
            async with large.reading(request, max_feedback_bytes) as bodies:
                return await run_in_threadpool(store_feedback, bodies, prediction_log, logged_ids)
        except RequestError as exc:
            return _json(exc.body(), exc.status, {"connection": "close"})

    def store_feedback(bodies: list[bytearray], log: PredictionLog, known: fb.LoggedIds) -> Response:
        try:  # a label is {"id": …, "label": …} (3 values) or {"request_id", "row", "label"} (4)
            payload = loads_within(bodies.pop(), 4 * max_rows + 64, f"{max_rows} labels")
        except RequestError as exc:
            return _json({"error": exc.summary}, exc.status)
        records = payload.get("labels", [payload]) if isinstance(payload, dict) else None
        if not isinstance(records, list):
            message = 'send {"id": "<request_id>:<row>", "label": ...} or {"labels": [...]}'
            return _json({"error": message}, 400)
        try:
            labels = fb.normalize(fb.labels_from_records(records), classes)
        except fb.FeedbackError as exc:
            return _json({"error": str(exc)}, 400)
        buffered = log.buffered_requests()  # before the segments: a row moving between is in one
        try:
            unknown = known.check(labels, buffered)
            if unknown.any():  # maybe answered by another worker, whose rows are not in a segment yet
                pending = log.pending_requests()
                known.refresh()
                unknown = known.unknown(labels, pending)
            stored = fb.write_feedback(log.fs, feedback_folder, labels, "http", unknown)
        except Exception as exc:  # the store (local disk, S3) failed: nothing was acknowledged
            logger.error("could not store feedback: %s", exc)
            return _json(
                {"error": f"the labels could not be stored ({type(exc).__name__}: {exc}); send them again"},
                503,
            )
        return _json({"model": identity, **stored.to_dict()})

    # -- Open Inference Protocol (V2) ------------------------------------------------------------

    @app.get("/v2/health/live")
    async def v2_live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def v2_ready() -> Response:
        ok = prediction_log is None or prediction_log.error is None
        return _json({"ready": ok}, 200 if ok else 503)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def v2_metadata(request: Request, name: str, version: str | None = None) -> Response:
        if not authorized(request):
            return _unauthorized()
        if (missing := _v2_missing(name, version)) is not None:
            return missing
        return _json(model_metadata(model))

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_model_ready(request: Request, name: str, version: str | None = None) -> Response:
        if not authorized(request):
            return _unauthorized()
        if (missing := _v2_missing(name, version)) is not None:
            return missing
        ok = prediction_log is None or prediction_log.error is None
        return _json({"name": name, "ready": ok}, 200 if ok else 503)

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def v2_infer(request: Request, name: str, version: str | None = None) -> Response:
        return await timed("v2_infer", _v2_infer(request, name, version))

    async def _v2_infer(request: Request, name: str, version: str | None) -> Response:
        if not authorized(request):
            return _unauthorized()
        if (missing := _v2_missing(name, version)) is not None:
            return missing
        request_id = _request_id(request)
        content_type = request.headers.get("content-type")
        # Triton's and KServe's clients send no Content-Type; anything else but JSON is refused (a
        # browser's cross-site form or text/plain POST). See SECURITY.md on the missing-header case.
        header_length = request.headers.get("inference-header-content-length")
        # octet-stream with the binary extension's header only: a cross-site form cannot set that header.
        binary_type = (
            None not in (header_length, content_type)
            and content_type.split(";", 1)[0].strip().lower() == _OCTETS
        )
        if content_type is not None and not _is_json(content_type) and not binary_type:
            return _v2_error(
                {"error": "send the body as JSON ('Content-Type: application/json')"}, 415, request_id
            )
        if header_length is not None and not header_length.strip().isdigit():
            message = f"Inference-Header-Content-Length must be the JSON header's length in bytes, not {header_length!r}"
            return _v2_error({"error": message}, 400, request_id)
        try:
            async with large.reading(request, max_body_bytes) as bodies:
                return await _v2_infer_body(request, name, bodies, request_id, header_length)
        except RequestError as exc:
            return _v2_error(exc.body(), exc.status, request_id, {"connection": "close"})

    async def _v2_infer_body(
        request: Request, name: str, bodies: list[bytearray], request_id: str, header_length: str | None
    ) -> Response:
        kept = bodies[0] if mirror is not None else None
        form = Form(v2=True, header_length=None if header_length is None else int(header_length))
        if model.runtime == "onnx" and len(bodies[0]) <= inline_bytes:
            response = answer(bodies, request_id, form)
        else:
            response = await run_in_threadpool(answer, bodies, request_id, form)
        if kept is not None and response.status_code == 200:
            # By name only: the challenger serves another version of the model.
            headers = (("inference-header-content-length", header_length),) if header_length else ()
            mirror.offer(f"/v2/models/{name}/infer", kept, request_id, request.headers.get("authorization"),
                         (("content-type", _JSON), *headers))  # fmt: skip
        return response

    def _v2_missing(name: str, version: str | None) -> Response | None:
        if name != identity["name"]:
            return _json({"error": f"unknown model {name!r}; this server serves {identity['name']!r}"}, 404)
        if version is not None and version != str(identity["version"]):
            message = f"model {name!r} has no version {version!r} here; this server serves version {identity['version']}"
            return _json({"error": message}, 404)
        return None

    return app


@dataclass(frozen=True)
class Form:
    """What a request's body is and what its answer should be."""

    v2: bool = False
    header_length: int | None = None  # V2's binary extension: the JSON header's length
    arrow_in: bool = False
    arrow_out: bool = False


def _answer(identity: dict, classes: list[Any] | None, predictions: Predictions, request_id: str) -> bytes:
    out: dict[str, Any] = {"model": identity, "predictions": _plain_list(predictions.labels)}
    out["ids"] = fb.row_ids(request_id, len(predictions.labels))  # what POST /feedback names rows by
    if predictions.probabilities is not None:
        # orjson writes C-ordered arrays only; HistGradientBoosting's probabilities are not.
        out["probabilities"] = np.ascontiguousarray(predictions.probabilities, dtype=np.float64)
    if classes is not None:
        out["classes"] = classes
    out["request_id"] = request_id
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)


def _plain_list(values: np.ndarray) -> Any:
    # orjson writes numeric arrays natively; object arrays (string labels) need plain lists.
    if values.dtype == object:
        return values.tolist()
    if values.dtype.kind == "f":
        return np.ascontiguousarray(values, dtype=np.float64)
    return values


def _is_json(content_type: str | None) -> bool:
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() == _JSON


def _request_id(request: Request) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one (kept in the prediction log)."""
    given = request.headers.get("x-request-id")
    return given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex


def _error(
    body: dict[str, Any], status: int, request_id: str, headers: dict[str, str] | None = None
) -> Response:
    return _json({**body, "request_id": request_id}, status, headers)


def _v2_error(
    body: dict[str, Any], status: int, request_id: str, headers: dict[str, str] | None = None
) -> Response:
    """V2's error shape, {"error": message}; a signature problem is a 400 there (422 on /predict)."""
    return _json(
        {"error": body["error"]},
        400 if status == 422 else status,
        {"x-request-id": request_id, **(headers or {})},
    )


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=_JSON, headers=headers)


def _unauthorized() -> Response:
    return Response(
        orjson.dumps({"error": "missing or wrong bearer token; send 'Authorization: Bearer <token>'"}),
        status_code=401,
        media_type=_JSON,
        headers={"WWW-Authenticate": "Bearer"},
    )
