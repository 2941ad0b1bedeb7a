"""The prediction log: every prediction the server makes, as append-only Parquet segments in the store.

Layout (any fsspec URL: a local folder or S3)::

    {store_url}/predictions/{model_name}/{version}/{first}_{last}_{id}-{seq}.parquet
    {store_url}/predictions/.wal/{model_name}/{version}/{id}-{seq}.wal     (local stores; see wal_folder)

``first``/``last`` are the UTC times of the segment's first and last row (``20260102T030405123456Z``),
so names sort by time and a reader can skip segments outside a time window without opening them;
``id-seq`` names the write-ahead file the segment was made from (``id`` is random per server
process, so workers and restarts never write the same name). A segment appears whole or not at
all: local segments are written under a hidden temporary name, fsynced and renamed; object stores
make a PUT visible only once it completes.

One row per predicted row: ``request_id``, ``row`` (position in the request), ``time`` (UTC),
``model_version``, ``model_hash``, one column per input feature (numeric as float64, categorical as
string; a feature whose name collides with these is stored as ``input.<name>``), ``prediction``, and
for classifiers with probabilities one ``proba_<class>`` column per class. The Parquet schema
metadata (key ``provenflow``) maps columns back to feature names.

**Nothing answered is lost.** ``append`` writes the request's rows to this process's write-ahead
file (length- and CRC-framed orjson records, one ``writev`` on an ``O_APPEND`` descriptor) before
the server answers, so once a prediction is answered its rows are in the operating system: a
``kill -9`` or OOM kill cannot lose them. ``fsync=True`` also flushes each record to disk, for
machine crashes (measured here: ~2.6 ms p50 per request instead of ~10 µs). A background thread
turns the buffered rows into a segment every ``flush_rows`` rows or ``flush_seconds``, and on
``close()``: it seals the write-ahead file (new appends go to a new one), stores the segment named
after it, then deletes it. Each server process holds an ``flock`` on its files; ``recover`` (run
by ``start()`` and by ``read_predictions``, so by the drift monitor) turns every file nobody holds
into its segment. A segment's name ends with its file's name, so after a crash between storing a
segment and deleting its file, recovery finds the segment and only deletes the file: no row is
logged twice. A request torn by the kill (its write unfinished, so never answered) is dropped. Write-ahead files
live on local disk: with an object store they are in the temporary folder (``wal_folder``), and
only a server started again on the same disk (or pod) recovers them.

A segment write that fails (store unreachable) keeps its rows and its file and is retried; while
rows back up beyond ``max_backlog_rows`` ``append`` raises ``PredictionLogFull``, so the server
answers 503 instead of serving predictions it cannot log.

Hot path, measured (bench/predictlog_crash.py, one-row requests): ``append`` costs ~10 µs p50,
~30 µs p99 with write-through, against ~2/5 µs when it only buffered in memory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import struct
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import fsspec
import numpy as np
import orjson
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
# Write-ahead frames: payload length and CRC-32, then the orjson payload.
_FRAME = struct.Struct("<II")
# A request's rows go to the write-ahead file in parts of at most this many rows: orjson holds the
# GIL while it serializes, and 10,000 rows take ~5 ms, so the event loop is never held up longer.
WAL_PART_ROWS = 10_000
# Requests per part when a segment's table is built (see _Schema.table).
TABLE_PART_CHUNKS = 500
_TYPES = {"str": str, "bool": bool, "int": int, "float": float}


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


@dataclass
class _Wal:
    """One open write-ahead file and the chunks it holds (the same rows, in memory, for the segment)."""

    seq: int
    path: str
    fd: int
    size: int  # bytes of whole records written so far
    chunks: list[_Chunk] = field(default_factory=list)
    rows: int = 0


def log_folder(store_url: str, model_name: str, version: int | str) -> str:
    """The URL of one model version's log folder."""
    return f"{store_url.rstrip('/')}/predictions/{quote(model_name, safe='')}/{version}"


def wal_folder(fs: fsspec.AbstractFileSystem, folder: str) -> str:
    """Where the write-ahead files of a log folder live: on the local disk in any case.

    A local store keeps them in ``predictions/.wal/NAME/VERSION`` beside the segments' folders;
    for an object store they go to the temporary folder (in Kubernetes an emptyDir, which
    outlives a container restart within its pod)."""
    if isinstance(fs, LocalFileSystem):
        version_dir = os.path.normpath(folder)
        model_dir = os.path.dirname(version_dir)
        return os.path.join(
            os.path.dirname(model_dir), ".wal", os.path.basename(model_dir), os.path.basename(version_dir)
        )
    digest = hashlib.sha256(fs.unstrip_protocol(folder).encode()).hexdigest()[:24]
    return os.path.join(tempfile.gettempdir(), "provenflow-wal", digest)


def feature_columns(features: tuple[Feature, ...]) -> dict[str, str]:
    """Feature name → column name in the log."""
    return {
        f.name: f"input.{f.name}" if f.name in RESERVED or f.name.startswith("proba_") else f.name
        for f in features
    }


@dataclass(frozen=True)
class _Schema:
    """What a segment's columns and metadata are made of; kept in each write-ahead file's header."""

    model: str
    version: int
    model_hash: str
    features: tuple[Feature, ...]
    classes: list[Any] | None

    @property
    def columns(self) -> dict[str, str]:
        return feature_columns(self.features)

    def header(self) -> bytes:
        return orjson.dumps(
            {
                "model": self.model, "version": self.version, "hash": self.model_hash, "classes": self.classes,
                "features": [[f.name, f.kind, [t.__name__ for t in f.category_types]] for f in self.features],
            }
        )  # fmt: skip

    @classmethod
    def from_header(cls, payload: bytes) -> _Schema:
        head = orjson.loads(payload)
        features = tuple(Feature(n, k, tuple(_TYPES[t] for t in types)) for n, k, types in head["features"])
        return cls(head["model"], int(head["version"]), head["hash"], features, head["classes"])

    def table(self, chunks: list[_Chunk]) -> pa.Table:
        # Built in parts: a segment of 5,000 one-row requests is ~30 ms of GIL-holding numpy/arrow
        # calls, and the event loop, which needs the GIL for every request, must get it back between
        # them (single-row p99.9 at 500 req/s: see provenflow/serving/app.py).
        parts = [
            self._part(chunks[i : i + TABLE_PART_CHUNKS]) for i in range(0, len(chunks), TABLE_PART_CHUNKS)
        ]
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="default")
        metadata = json.dumps(
            {
                "model": self.model,
                "version": self.version,
                "hash": self.model_hash,
                "features": {column: name for name, column in self.columns.items()},
            }
        ).encode()
        return table.replace_schema_metadata({**(table.schema.metadata or {}), b"provenflow": metadata})

    def _part(self, chunks: list[_Chunk]) -> pa.Table:
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
        names = self.columns
        for feature in self.features:
            values = np.concatenate([c.columns[feature.name] for c in chunks])
            if feature.kind == "numeric":
                columns[names[feature.name]] = pa.array(values, pa.float64())
            else:
                kind = pa.string() if feature.category_types == (str,) else None
                columns[names[feature.name]] = pa.array(values, kind, from_pandas=True)
        labels = np.concatenate([np.asarray(c.labels) for c in chunks])
        columns["prediction"] = pa.array(labels.tolist() if labels.dtype == object else labels)
        if self.classes is not None and all(c.probabilities is not None for c in chunks):
            proba = np.concatenate([c.probabilities for c in chunks]).astype(np.float64, copy=False)
            for i, cls in enumerate(self.classes):
                columns[f"proba_{cls}"] = pa.array(proba[:, i])
        return pa.table(columns)


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
        fsync: bool = False,
        wal_dir: str | None = None,
    ) -> None:
        """``fs``: an already configured filesystem (e.g. ``ContentStore.fs``, with its credentials);
        ``store_url`` is then the store's root path in it. ``fsync``: also fsync every write-ahead
        record (survives a machine crash, not only a process crash; costs a disk flush per request).
        ``wal_dir``: where the write-ahead files go (default: ``wal_folder``)."""
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
        self.wal_dir = wal_dir or wal_folder(self.fs, self.folder)
        self.fsync = fsync
        self.version, self.model_hash = int(version), model_hash
        self.features, self.classes = features, classes
        self.columns = feature_columns(features)
        self.schema = _Schema(model_name, self.version, model_hash, features, classes)
        self.flush_rows, self.flush_seconds, self.max_backlog_rows = (
            flush_rows,
            flush_seconds,
            max_backlog_rows,
        )
        self.rows_written = 0
        self.segments_written = 0
        self.rows_recovered = 0
        self.error: str | None = None  # the last write failure, until a write succeeds again
        self._id = uuid.uuid4().hex[:12]  # this process's write-ahead files and segments carry it
        self._seq = 0  # the next write-ahead file's number
        self._wal: _Wal | None = None  # receives appends
        self._sealed: list[_Wal] = []  # rotated, waiting for their segment (oldest first)
        self._buffered = 0
        self._lock = threading.Lock()  # guards the open write-ahead file and the row counts
        self._write_lock = threading.Lock()  # one segment write at a time
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"PredictionLog({self.url!r}, buffered={self._buffered}, written={self.rows_written})"

    @property
    def buffered_rows(self) -> int:
        return self._buffered

    def buffered_requests(self) -> dict[str, int]:
        """Request id → rows of what this process answered but has not yet written as a segment."""
        with self._lock:
            wals = [*self._sealed, *([self._wal] if self._wal else [])]
            return {c.request_id: c.rows for wal in wals for c in wal.chunks}

    def pending_requests(self) -> dict[str, int]:
        """Request id → rows answered by any server process on this disk (``--workers N``: the
        siblings too) and not yet in a segment: what their write-ahead files hold."""
        pending = self.buffered_requests()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.wal_dir):
                if name.endswith(".wal"):
                    with contextlib.suppress(OSError, ValueError, KeyError, orjson.JSONDecodeError):
                        for request_id, rows in _wal_requests(os.path.join(self.wal_dir, name)).items():
                            pending[request_id] = max(rows, pending.get(request_id, 0))
        return pending

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> PredictionLog:
        """Recover what dead processes left in write-ahead files, open ours, start the writer (idempotent)."""
        with self._lock:
            if self._wal is None:
                self.fs.makedirs(self.folder, exist_ok=True)
                os.makedirs(self.wal_dir, exist_ok=True)
                self.rows_recovered += recover(self.fs, self.folder, self.wal_dir)
                self._wal = self._open_wal()
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="provenflow-prediction-log", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the writer and write every buffered row; raises if the last write fails (the rows
        then stay in their write-ahead files, and the next start recovers them)."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
        with self._lock:
            wal, self._wal = self._wal, None
        if wal is not None and not wal.chunks:
            _retire(wal)
        elif wal is not None:
            os.close(wal.fd)
        if self._buffered:
            for sealed in self._sealed:
                os.close(sealed.fd)
            raise StoreError(
                f"{self._buffered} predictions could not be written to the prediction log {self.url}: "
                f"{self.error}; they are kept in {self.wal_dir} and written when the server starts again"
            )

    def __enter__(self) -> PredictionLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------

    def append(self, request_id: str, batch: Batch, predictions: Predictions) -> None:
        """Write one request's rows to the write-ahead file (one ``write`` to the OS, no fsync
        unless asked) and keep them for the next segment; returns once a ``kill -9`` cannot lose them."""
        if self._buffered >= self.max_backlog_rows:
            raise PredictionLogFull(
                f"the prediction log {self.url} has {self._buffered} unwritten rows (limit "
                f"{self.max_backlog_rows}); last write error: {self.error}"
            )
        if self._wal is None:
            self.start()
        chunk = _Chunk(
            request_id,
            time.time_ns() // 1000,
            batch.rows,
            batch.columns,
            predictions.labels,
            predictions.probabilities,
        )
        frames = _frames(chunk)  # serialized outside the lock
        with self._lock:
            wal = self._wal
            if wal is None:
                raise StoreError(f"the prediction log {self.url} is closed")
            try:
                wal.size += _write_all(wal.fd, frames)
                if self.fsync:
                    os.fdatasync(wal.fd)
            except OSError as exc:  # e.g. a full disk: cut the torn record off, and refuse to answer
                _truncate(wal.fd, wal.size)
                self.error = f"cannot write {wal.path}: {exc}"
                raise PredictionLogFull(f"the prediction log {self.url} {self.error}") from exc
            wal.chunks.append(chunk)
            wal.rows += chunk.rows
            self._buffered += chunk.rows
            full = self._buffered >= self.flush_rows
        if full:
            self._wake.set()

    def flush(self) -> None:
        """Write the buffered rows now (no-op when nothing is buffered): the open write-ahead
        file is sealed and a new one opened, then each sealed file becomes one segment, named
        after it, and is deleted once the segment is stored."""
        with self._write_lock:
            stuck = None
            with self._lock:
                if self._wal is not None and self._wal.chunks:
                    try:
                        self._sealed.append(self._wal)
                        self._wal = self._open_wal()
                    except OSError as exc:  # keep appending to the current one; seal it next time
                        self._sealed.pop()
                        stuck = self.error = f"cannot open a new write-ahead file in {self.wal_dir}: {exc}"
                        log.warning("prediction log %s: %s", self.url, self.error)
            while self._sealed:
                wal = self._sealed[0]
                try:
                    _write_segment(self.fs, self.folder, self.schema, wal.chunks, _tag(wal.path))
                except Exception as exc:  # keep the rows (and their file) for the next attempt
                    self.error = f"{type(exc).__name__}: {exc}"
                    log.warning(
                        "could not write a prediction log segment to %s (will retry): %s",
                        self.url,
                        self.error,
                    )
                    return
                _retire(wal)
                with self._lock:
                    self._sealed.pop(0)
                    self._buffered -= wal.rows
                self.rows_written += wal.rows
                self.segments_written += 1
            self.error = stuck

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if not self._stop:
                try:
                    self.flush()
                except Exception:  # the writer must outlive any surprise; the rows stay in their files
                    log.exception("prediction log %s: flush failed", self.url)

    def _open_wal(self) -> _Wal:
        """A new write-ahead file, locked by this process for as long as it lives (recovery skips
        locked files), created under a temporary name so that it never appears without its header."""
        seq, self._seq = self._seq, self._seq + 1
        path = os.path.join(self.wal_dir, f"{self._id}-{seq:06d}.wal")
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = _write_all(fd, [_frame(self.schema.header())])
            os.rename(path + ".tmp", path)
            if self.fsync:
                os.fsync(fd)
                _fsync_dir(self.wal_dir)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path + ".tmp")
            raise
        return _Wal(seq, path, fd, size)


def _retire(wal: _Wal) -> None:
    """Its rows are in a stored segment: delete the write-ahead file, then let go of its lock."""
    try:
        os.unlink(wal.path)
    finally:
        os.close(wal.fd)


def _tag(wal_path: str) -> str:
    """A segment's name ends with the name of the write-ahead file it came from (``ID-SEQ``)."""
    return os.path.basename(wal_path).removesuffix(".wal")


def _write_segment(
    fs: fsspec.AbstractFileSystem, folder: str, schema: _Schema, chunks: list[_Chunk], tag: str
) -> str:
    """Write ``chunks`` as ``{first}_{last}_{tag}.parquet``. The name depends only on the rows and
    the write-ahead file, so writing the same file's rows twice (a crash after the segment was
    stored but before its write-ahead file was deleted) replaces the segment with itself."""
    table = schema.table(chunks)
    times = [c.time_us for c in chunks]
    name = f"{_stamp(min(times))}_{_stamp(max(times))}_{tag}.parquet"
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    data = buffer.getvalue()
    target = f"{folder}/{name}"
    if isinstance(fs, LocalFileSystem):
        _write_local(target, data)
    else:
        fs.pipe_file(target, data)
    return target


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


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the write-ahead format --------------------------------------------------------------


def _frame(payload: bytes) -> bytes:
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _frames(chunk: _Chunk) -> list[bytes]:
    """One request as frames of at most ``WAL_PART_ROWS`` rows; ``k``/``K`` number the parts, so
    recovery drops a request whose last part never reached the file (it was never answered)."""
    parts = max(1, -(-chunk.rows // WAL_PART_ROWS))
    frames = []
    for k in range(parts):
        rows = slice(k * WAL_PART_ROWS, (k + 1) * WAL_PART_ROWS)
        payload = {
            "r": chunk.request_id, "t": chunk.time_us, "k": k, "K": parts,
            "c": {name: _plain(values[rows]) for name, values in chunk.columns.items()},
            "y": _plain(np.asarray(chunk.labels)[rows]),
            "p": None if chunk.probabilities is None else _plain(chunk.probabilities[rows]),
        }  # fmt: skip
        frames.append(_frame(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)))
    return frames


def _plain(values: np.ndarray) -> Any:
    # orjson writes contiguous numeric arrays itself (NaN as null); anything else as a list.
    return values if values.dtype.kind in "fiub" and values.flags.c_contiguous else values.tolist()


def _write_all(fd: int, frames: list[bytes]) -> int:
    """One writev for all of a request's frames (O_APPEND: requests from threads never interleave)."""
    total = sum(map(len, frames))
    written = os.writev(fd, frames)
    if written < total:  # a short write (huge request, or a signal): finish the rest in order
        rest = b"".join(frames)[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]
    return total


def _truncate(fd: int, size: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


def _read_wal(fd: int) -> tuple[_Schema, list[_Chunk]]:
    """The header and the complete requests of a write-ahead file; a torn or damaged tail (a
    process killed mid-write, before it answered) ends the file."""
    with os.fdopen(os.dup(fd), "rb") as fh:
        frames = _whole_frames(fh.read())
    if not frames:
        raise ValueError("no header")
    schema = _Schema.from_header(frames[0])
    chunks, parts = [], []
    for payload in frames[1:]:
        part = orjson.loads(payload)
        if part["k"] == 0:
            parts = []
        parts.append(part)
        if part["k"] == part["K"] - 1 and len(parts) == part["K"]:
            chunks.append(_decode(schema, parts))
            parts = []
    return schema, chunks


def _wal_requests(path: str) -> dict[str, int]:
    """Request id → rows of the complete requests in a write-ahead file another process may be
    appending to (a tail being written reads as torn, and is left out); no feature is decoded."""
    with open(path, "rb") as fh:
        frames = _whole_frames(fh.read())
    requests: dict[str, int] = {}
    rows = 0
    for payload in frames[1:]:  # after the header
        part = orjson.loads(payload)
        rows = len(part["y"]) if part["k"] == 0 else rows + len(part["y"])
        if part["k"] == part["K"] - 1:
            requests[part["r"]] = rows
    return requests


def _whole_frames(data: bytes) -> list[bytes]:
    """The payloads of a write-ahead file's frames, up to the first torn or damaged one."""
    frames, at = [], 0
    while at + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, at)
        payload = data[at + _FRAME.size : at + _FRAME.size + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        frames.append(payload)
        at += _FRAME.size + length
    return frames


def _decode(schema: _Schema, parts: list[dict]) -> _Chunk:
    columns = {}
    for feature in schema.features:
        values = [v for part in parts for v in part["c"][feature.name]]
        if feature.kind == "numeric":
            columns[feature.name] = np.array(values, dtype=np.float64)  # null → NaN
        else:
            column = np.array(values, dtype=object)
            column[pd.isna(column)] = np.nan
            columns[feature.name] = column
    labels = np.asarray([v for part in parts for v in part["y"]])
    if labels.dtype.kind in "US":
        labels = labels.astype(object)
    proba = None
    if parts[0]["p"] is not None:
        proba = np.array([row for part in parts for row in part["p"]], dtype=np.float64)
    rows = len(labels)
    return _Chunk(parts[0]["r"], int(parts[0]["t"]), rows, columns, labels, proba)


def recover(fs: fsspec.AbstractFileSystem, folder: str, wal_dir: str) -> int:
    """Turn every write-ahead file that no living process holds into its segment, then delete it;
    returns the rows recovered. Safe to run from several processes at once, and to repeat."""
    if not os.path.isdir(wal_dir):
        return 0
    recovered = 0
    stored = None
    for name in sorted(os.listdir(wal_dir)):
        path = os.path.join(wal_dir, name)
        if not name.endswith((".wal", ".wal.tmp")):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # its owner just retired it
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a living server's
            if os.fstat(fd).st_nlink == 0:
                continue  # retired while we waited for the lock
            if name.endswith(".tmp") and time.time() - os.fstat(fd).st_mtime < 60:
                continue  # maybe being created right now (it is locked only after it exists)
            if name.endswith(".wal"):
                if stored is None:
                    stored = (
                        {_tag_of_segment(p) for p in fs.ls(folder, detail=False)}
                        if fs.exists(folder)
                        else set()
                    )
                if _tag(path) not in stored:
                    recovered += _recover_file(fs, folder, fd, path)
            os.unlink(path)  # recovered, already stored, or a header-only .tmp of a dead process
        finally:
            os.close(fd)
    return recovered


def _recover_file(fs: fsspec.AbstractFileSystem, folder: str, fd: int, path: str) -> int:
    try:
        schema, chunks = _read_wal(fd)
    except (ValueError, KeyError, orjson.JSONDecodeError) as exc:
        raise StoreError(
            f"the prediction write-ahead file {path} cannot be read ({exc}); move it away to go on"
        ) from exc
    if not chunks:
        return 0
    fs.makedirs(folder, exist_ok=True)
    target = _write_segment(fs, folder, schema, chunks, _tag(path))
    rows = sum(c.rows for c in chunks)
    log.warning("recovered %d predictions of a stopped server from %s into %s", rows, path, target)
    return rows


def _tag_of_segment(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".parquet").rsplit("_", 1)[-1]


# -- reading ---------------------------------------------------------------------------


def read_predictions(
    store_url: str,
    model_name: str,
    version: int | str,
    since: datetime | None = None,
    until: datetime | None = None,
    storage_options: dict | None = None,
    columns: Collection[str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """The logged predictions of one model version with ``since <= time < until``, and the
    segments skipped because they could not be read (each named in a warning). ``columns``: read
    only those of each segment's columns (where it has them; ``time`` always, for the window), e.g. no
    inputs for a quality check."""
    fs, folder = fsspec.core.url_to_fs(log_folder(store_url, model_name, version), **(storage_options or {}))
    try:  # rows a killed server answered but had not yet written as a segment
        recover(fs, folder, wal_folder(fs, folder))
    except (OSError, StoreError) as exc:
        log.warning("could not recover the prediction write-ahead files of %s: %s", folder, exc)
    if not fs.exists(folder):
        return pd.DataFrame(), []
    paths = sorted(p for p in fs.ls(folder, detail=False) if _is_segment(p))
    frames, skipped = [], []
    for path in paths:
        if not _may_overlap(path, since, until):
            continue
        try:
            with fs.open(path, "rb") as fh:
                if columns is None:
                    frames.append(pq.read_table(fh).to_pandas())
                else:
                    present = pq.ParquetFile(fh).schema_arrow.names
                    fh.seek(0)
                    wanted = [c for c in present if c in columns or c == "time"]  # time: the window
                    frames.append(pq.read_table(fh, columns=wanted).to_pandas())
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
