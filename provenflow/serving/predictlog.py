"""The prediction log: every prediction the server makes, as append-only Parquet segments in the store.

Layout (any fsspec URL: a local folder or S3)::

    {store_url}/predictions/{model_name}/{version}/{first}_{last}_{id}.parquet

``first``/``last`` are the UTC times of the segment's first and last row (``20260102T030405123456Z``),
so names sort by time and a reader can skip segments outside a time window without opening them;
``id`` is random, so workers and restarts never write the same name and no segment is overwritten.
A segment appears whole or not at all: local segments are written under a hidden temporary name,
fsynced and renamed; object stores make a PUT visible only once it completes.

One row per predicted row: ``request_id``, ``row`` (position in the request), ``time`` (UTC),
``model_version``, ``model_hash``, one column per input feature (numeric as float64, categorical as
string; a feature whose name collides with these is stored as ``input.<name>``), ``prediction``, and
for classifiers with probabilities one ``proba_<class>`` column per class. The Parquet schema
metadata (key ``provenflow``) maps columns back to feature names.

Rows are buffered in memory and written by a background thread when ``flush_rows`` rows are
waiting or every ``flush_seconds``, and on ``close()`` (a clean shutdown loses nothing).
**Crash bound:** a process that dies without ``close()`` loses the rows not yet written: at most
about ``flush_rows`` rows (plus one request's rows) or ``flush_seconds`` seconds of predictions,
whichever is reached first, plus a segment being written at that moment. A write that fails
(store unreachable) keeps its rows and is retried; while rows back up beyond ``max_backlog_rows``
``append`` raises ``PredictionLogFull``, so the server answers 503 instead of serving predictions
it cannot log.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from provenflow.errors import StoreError
from provenflow.serving.inputs import Batch, Feature
from provenflow.serving.runtime import Predictions

log = logging.getLogger(__name__)

RESERVED = frozenset({"request_id", "row", "time", "model_version", "model_hash", "prediction"})
_STAMP = "%Y%m%dT%H%M%S%fZ"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PredictionLogFull(StoreError):
    """Rows are backing up because segments cannot be written; predictions are refused until they can."""


@dataclass(frozen=True)
class _Chunk:
    request_id: str
    time_us: int
    rows: int
    columns: dict[str, np.ndarray]
    labels: np.ndarray
    probabilities: np.ndarray | None


def log_folder(store_url: str, model_name: str, version: int | str) -> str:
    """The URL of one model version's log folder."""
    return f"{store_url.rstrip('/')}/predictions/{quote(model_name, safe='')}/{version}"


def feature_columns(features: tuple[Feature, ...]) -> dict[str, str]:
    """Feature name → column name in the log."""
    return {
        f.name: f"input.{f.name}" if f.name in RESERVED or f.name.startswith("proba_") else f.name
        for f in features
    }


class PredictionLog:
    def __init__(
        self,
        store_url: str,
        model_name: str,
        version: int,
        model_hash: str,
        features: tuple[Feature, ...],
        classes: list[Any] | None,
        flush_rows: int = 10_000,
        flush_seconds: float = 10.0,
        max_backlog_rows: int = 1_000_000,
        fs: fsspec.AbstractFileSystem | None = None,
    ) -> None:
        """``fs``: an already configured filesystem (e.g. ``ContentStore.fs``, with its credentials);
        ``store_url`` is then the store's root path in it."""
        if flush_rows < 1 or flush_seconds <= 0:
            raise ValueError(
                f"flush_rows ({flush_rows}) and flush_seconds ({flush_seconds}) must be positive"
            )
        self.url = log_folder(store_url, model_name, version)
        if fs is None:
            self.fs, self.folder = fsspec.core.url_to_fs(self.url)
        else:
            self.fs, self.folder = fs, self.url
        self.local = isinstance(self.fs, LocalFileSystem)
        self.version, self.model_hash = int(version), model_hash
        self.features, self.classes = features, classes
        self.columns = feature_columns(features)
        self.flush_rows, self.flush_seconds, self.max_backlog_rows = (
            flush_rows,
            flush_seconds,
            max_backlog_rows,
        )
        self.rows_written = 0
        self.segments_written = 0
        self.error: str | None = None  # the last write failure, until a write succeeds again
        self._buffer: list[_Chunk] = []
        self._buffered = 0
        self._lock = threading.Lock()  # guards the buffer
        self._write_lock = threading.Lock()  # one segment write at a time
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._metadata = json.dumps(
            {
                "model": model_name,
                "version": self.version,
                "hash": model_hash,
                "features": {column: name for name, column in self.columns.items()},
            }
        ).encode()

    def __repr__(self) -> str:
        return f"PredictionLog({self.url!r}, buffered={self._buffered}, written={self.rows_written})"

    @property
    def buffered_rows(self) -> int:
        return self._buffered

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> PredictionLog:
        """Start the background writer (idempotent)."""
        if self._thread is None:
            self.fs.makedirs(self.folder, exist_ok=True)
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="provenflow-prediction-log", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the writer and write every buffered row; raises if the last write fails."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
        if self._buffered:
            raise StoreError(
                f"{self._buffered} predictions could not be written to the prediction log {self.url}: {self.error}"
            )

    def __enter__(self) -> PredictionLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------

    def append(self, request_id: str, batch: Batch, predictions: Predictions) -> None:
        """Buffer one request's rows (cheap: no copy, no I/O; the writer thread does the rest)."""
        if self._buffered >= self.max_backlog_rows:
            raise PredictionLogFull(
                f"the prediction log {self.url} has {self._buffered} unwritten rows (limit "
                f"{self.max_backlog_rows}); last write error: {self.error}"
            )
        chunk = _Chunk(
            request_id,
            time.time_ns() // 1000,
            batch.rows,
            batch.columns,
            predictions.labels,
            predictions.probabilities,
        )
        with self._lock:
            self._buffer.append(chunk)
            self._buffered += chunk.rows
            full = self._buffered >= self.flush_rows
        if full:
            self._wake.set()

    def flush(self) -> None:
        """Write the buffered rows now, as one segment (no-op when nothing is buffered)."""
        with self._write_lock:
            with self._lock:
                chunks, self._buffer, self._buffered = self._buffer, [], 0
            if not chunks:
                return
            try:
                self._write_segment(chunks)
            except Exception as exc:
                with self._lock:  # keep the rows, in order, for the next attempt
                    self._buffer[:0] = chunks
                    self._buffered += sum(c.rows for c in chunks)
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "could not write a prediction log segment to %s (will retry): %s", self.url, self.error
                )
                return
            self.error = None

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if not self._stop:
                self.flush()

    def _write_segment(self, chunks: list[_Chunk]) -> None:
        table = self._table(chunks)
        first, last = (_stamp(chunks[0].time_us), _stamp(chunks[-1].time_us))
        name = f"{first}_{last}_{uuid.uuid4().hex[:12]}.parquet"
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        data = buffer.getvalue()
        target = f"{self.folder}/{name}"
        if self.local:
            _write_local(target, data)
        else:
            self.fs.pipe_file(target, data)
        self.rows_written += table.num_rows
        self.segments_written += 1

    def _table(self, chunks: list[_Chunk]) -> pa.Table:
        rows = np.array([c.rows for c in chunks])
        columns: dict[str, pa.Array] = {
            "request_id": pa.array(np.repeat([c.request_id for c in chunks], rows), pa.string()),
            "row": pa.array(np.concatenate([np.arange(n, dtype=np.int32) for n in rows])),
            "time": pa.array(np.repeat([c.time_us for c in chunks], rows), pa.timestamp("us", tz="UTC")),
            "model_version": pa.array(np.full(rows.sum(), self.version, dtype=np.int64)),
            "model_hash": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(rows.sum(), dtype=np.int32)), pa.array([self.model_hash])
            ),
        }
        for feature in self.features:
            values = np.concatenate([c.columns[feature.name] for c in chunks])
            if feature.kind == "numeric":
                columns[self.columns[feature.name]] = pa.array(values, pa.float64())
            else:
                kind = pa.string() if feature.category_types == (str,) else None
                columns[self.columns[feature.name]] = pa.array(values, kind, from_pandas=True)
        labels = np.concatenate([np.asarray(c.labels) for c in chunks])
        columns["prediction"] = pa.array(labels.tolist() if labels.dtype == object else labels)
        if self.classes is not None and all(c.probabilities is not None for c in chunks):
            proba = np.concatenate([c.probabilities for c in chunks]).astype(np.float64, copy=False)
            for i, cls in enumerate(self.classes):
                columns[f"proba_{cls}"] = pa.array(proba[:, i])
        table = pa.table(columns)
        return table.replace_schema_metadata({**(table.schema.metadata or {}), b"provenflow": self._metadata})


def _stamp(time_us: int) -> str:
    # Exact integer arithmetic: a name that rounded down could make a reader skip its last rows.
    return (_EPOCH + timedelta(microseconds=time_us)).strftime(_STAMP)


def _write_local(target: str, data: bytes) -> None:
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".tmp-{name}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, target)


# -- reading ---------------------------------------------------------------------------


def read_predictions(
    store_url: str,
    model_name: str,
    version: int | str,
    since: datetime | None = None,
    until: datetime | None = None,
    storage_options: dict | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """The logged predictions of one model version with ``since <= time < until``, and the
    segments skipped because they could not be read (each named in a warning)."""
    fs, folder = fsspec.core.url_to_fs(log_folder(store_url, model_name, version), **(storage_options or {}))
    if not fs.exists(folder):
        return pd.DataFrame(), []
    paths = sorted(p for p in fs.ls(folder, detail=False) if _is_segment(p))
    frames, skipped = [], []
    for path in paths:
        if not _may_overlap(path, since, until):
            continue
        try:
            with fs.open(path, "rb") as fh:
                frames.append(pq.read_table(fh).to_pandas())
        except (pa.ArrowException, OSError, ValueError) as exc:
            shown = fs.unstrip_protocol(path) if not isinstance(fs, LocalFileSystem) else path
            log.warning("skipping prediction log segment %s: it cannot be read as Parquet (%s)", shown, exc)
            skipped.append(shown)
    if not frames:
        return pd.DataFrame(), skipped
    frame = pd.concat(frames, ignore_index=True)
    if since is not None:
        frame = frame[frame["time"] >= pd.Timestamp(_utc(since))]
    if until is not None:
        frame = frame[frame["time"] < pd.Timestamp(_utc(until))]
    return frame.reset_index(drop=True), skipped


def _is_segment(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith(".")


def _may_overlap(path: str, since: datetime | None, until: datetime | None) -> bool:
    """Decide from the name alone; a name that does not parse is read (and filtered) anyway."""
    parts = path.rsplit("/", 1)[-1].split("_")
    try:
        first = datetime.strptime(parts[0], _STAMP).replace(tzinfo=UTC)
        last = datetime.strptime(parts[1], _STAMP).replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return True
    return not ((since is not None and last < _utc(since)) or (until is not None and first >= _utc(until)))


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
