"""The write-ahead files: what makes a prediction durable before the server answers it.

Each server process appends every request's rows to its own file (length- and CRC-_framed orjson
records, one ``writev`` on an ``O_APPEND`` descriptor), so once a prediction is answered its rows
are in the operating system and a ``kill -9`` or OOM kill cannot lose them. The file begins with a
header (the segment's schema), so that whoever reads it later needs nothing else. A request torn by
a kill (its write unfinished, so never answered) reads as a torn tail and is dropped.

Write-ahead files live on local disk: with an object store they are in the temporary folder
(``wal_folder``), and only a server started again on the same disk (or pod) recovers them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from provenflow.serving.predictlog.schema import ArrowRows, Chunk, Schema

# Write-ahead frames: payload length and CRC-32, then the orjson payload.
_FRAME = struct.Struct("<II")
# A request's rows go to the write-ahead file in parts of at most this many rows: orjson holds the
# GIL while it serializes, and 10,000 rows take ~5 ms, so the event loop is never held up longer.
WAL_PART_ROWS = 10_000


@dataclass
class Wal:
    """One open write-ahead file and the requests it holds (id and rows; their rows are in the file only)."""

    seq: int
    path: str
    fd: int
    size: int  # bytes of whole records written so far
    requests: list[tuple[str, int]] = field(default_factory=list)
    rows: int = 0


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


def open_wal(wal_dir: str, name: str, seq: int, schema: Schema, fsync: bool) -> Wal:
    """A new write-ahead file, locked by this process for as long as it lives (recovery skips
    locked files), created under a temporary name so that it never appears without its header."""
    path = os.path.join(wal_dir, f"{name}.wal")
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        size = write_all(fd, [_framed(schema.header())])
        os.rename(path + ".tmp", path)
        if fsync:
            os.fsync(fd)
            _fsync_dir(wal_dir)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path + ".tmp")
        raise
    return Wal(seq, path, fd, size)


def retire(wal: Wal) -> None:
    """Its rows are in a stored segment: delete the write-ahead file, then let go of its lock."""
    try:
        os.unlink(wal.path)
    finally:
        os.close(wal.fd)


def wal_tag(wal_path: str) -> str:
    """A segment's name ends with the name of the write-ahead file it came from (``ID-SEQ``)."""
    return os.path.basename(wal_path).removesuffix(".wal")


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the write-ahead format --------------------------------------------------------------


def _framed(payload: bytes) -> bytes:
    return _frame_head(payload) + payload


def _frame_head(payload: Any) -> bytes:
    """A frame's length and CRC: written before PAYLOAD in the same writev (a large payload is not copied)."""
    return _FRAME.pack(len(payload), zlib.crc32(payload))


def request_frames(chunk: Chunk) -> list[bytes]:
    """One request as frames of at most ``WAL_PART_ROWS`` rows; ``k``/``K`` number the parts, so
    recovery drops a request whose last part never reached the file (it was never answered).

    Requests of ``ARROW_FRAME_ROWS`` rows or more are written as Arrow IPC streams: the numeric
    columns go out as they are (no text), where orjson took ~17 ms for 10,000 rows (more than
    decoding an Arrow body of them, ~1 ms); small requests stay orjson (~10 µs for one row)."""
    parts = max(1, -(-chunk.rows // WAL_PART_ROWS))
    frames = []
    for k in range(parts):
        rows = slice(k * WAL_PART_ROWS, (k + 1) * WAL_PART_ROWS)
        if chunk.rows >= ARROW_FRAME_ROWS:
            try:
                payload = _arrow_part(chunk, rows, k, parts)
                frames += (_frame_head(payload), payload)
                continue
            except (pa.ArrowException, TypeError, ValueError):  # mixed-type categories: orjson below
                pass
        payload = {
            "r": chunk.request_id, "t": chunk.time_us, "k": k, "K": parts,
            "c": {name: _plain(values[rows]) for name, values in chunk.columns.items()},
            "y": _plain(np.asarray(chunk.labels)[rows]),
            "p": None if chunk.probabilities is None else _plain(chunk.probabilities[rows]),
        }  # fmt: skip
        frames.append(_framed(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)))
    return frames


# Frames written as Arrow IPC streams begin with its continuation marker; orjson frames with "{".
_ARROW_MARK = b"\xff\xff\xff\xff"
ARROW_FRAME_ROWS = 64


def _arrow_part(chunk: Chunk, rows: slice, k: int, parts: int) -> pa.Buffer:
    given = chunk.arrow or {}
    columns = {
        f"c.{name}": given[name][rows] if name in given else arrow_array(values[rows])
        for name, values in chunk.columns.items()
    }
    labels = chunk.arrow_labels
    columns["y"] = labels[rows] if labels is not None else arrow_array(np.asarray(chunk.labels)[rows])
    if chunk.probabilities is not None:
        proba = np.asarray(chunk.probabilities, dtype=np.float64)[rows]
        for i in range(proba.shape[1]):
            columns[f"p{i}"] = pa.array(proba[:, i])
    n = len(columns["y"])
    head = {"r": chunk.request_id, "t": chunk.time_us, "k": k, "K": parts, "n": n,
            "p": None if chunk.probabilities is None else int(chunk.probabilities.shape[1])}  # fmt: skip
    table = pa.table(columns).replace_schema_metadata({b"wal": orjson.dumps(head)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def arrow_array(values: np.ndarray) -> pa.Array:
    """VALUES as one Arrow array; a missing category (NaN in an object array) becomes null."""
    if values.dtype == object:
        return pa.array(values, from_pandas=True)  # NaN (a missing category) → null
    return pa.array(values)


def decode_part(payload: bytes) -> dict[str, Any]:
    """A write-ahead frame after the header as orjson's part: r, t, k, K, c (columns), y, p. An
    Arrow frame's columns come as numpy arrays (a 10,000-row frame as Python lists took ~10 ms)."""
    if not payload.startswith(_ARROW_MARK):
        return orjson.loads(payload)
    return _arrays(_arrow_frame(payload))


def _arrow_frame(payload: bytes) -> dict[str, Any]:
    table = pa.ipc.open_stream(payload).read_all()
    return {**orjson.loads(table.schema.metadata[b"wal"]), "table": table}


def _arrays(part: dict[str, Any]) -> dict[str, Any]:
    table = part.pop("table")
    columns = {
        name[2:]: table.column(name).to_numpy(zero_copy_only=False)
        for name in table.column_names
        if name.startswith("c.")
    }
    proba = None
    if part["p"] is not None:
        proba = np.column_stack([table.column(f"p{i}").to_numpy() for i in range(part["p"])])
    return {**part, "c": columns, "y": table.column("y").to_numpy(zero_copy_only=False), "p": proba}


def part_head(payload: bytes) -> tuple[str, int, int, int]:
    """A frame's request id, part number, parts and rows, without decoding its columns."""
    if payload.startswith(_ARROW_MARK):
        head = orjson.loads(pa.ipc.open_stream(payload).schema.metadata[b"wal"])
        return head["r"], head["k"], head["K"], head["n"]
    part = orjson.loads(payload)
    return part["r"], part["k"], part["K"], len(part["y"])


def _plain(values: np.ndarray) -> Any:
    # orjson writes contiguous numeric arrays itself (NaN as null); anything else as a list.
    return values if values.dtype.kind in "fiub" and values.flags.c_contiguous else values.tolist()


def write_all(fd: int, frames: list[Any]) -> int:
    """One writev for all of a request's frames (O_APPEND: requests from threads never interleave);
    FRAMES are bytes-like pieces (a frame's head and a large payload are two)."""
    total = sum(map(len, frames))
    written = os.writev(fd, frames)
    if written < total:  # a short write (huge request, or a signal): finish the rest in order
        rest = b"".join(frames)[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]
    return total


def truncate(fd: int, size: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


def read_wal(fd: int, arrow: bool = False) -> tuple[Schema, list[Chunk | ArrowRows]]:
    """The header and the complete requests of a write-ahead file; a torn or damaged tail (a
    process killed mid-write, before it answered) ends the file. ``arrow``: a request written as
    Arrow frames comes as ``ArrowRows`` (its columns as written, for ``Schema.table``), not decoded."""
    with os.fdopen(os.dup(fd), "rb") as fh:
        frames = whole_frames(fh.read())
    if not frames:
        raise ValueError("no header")
    schema = Schema.from_header(frames[0])
    chunks, parts = [], []
    for payload in frames[1:]:
        part = _arrow_frame(payload) if arrow and payload.startswith(_ARROW_MARK) else decode_part(payload)
        if part["k"] == 0:
            parts = []
        parts.append(part)
        if part["k"] == part["K"] - 1 and len(parts) == part["K"]:
            if all("table" in p for p in parts):
                table = pa.concat_tables([p["table"] for p in parts])
                chunks.append(ArrowRows(parts[0]["r"], int(parts[0]["t"]), table.num_rows, table))
            else:
                chunks.append(_decode(schema, [_arrays(p) if "table" in p else p for p in parts]))
            parts = []
    return schema, chunks


def whole_frames(data: bytes) -> list[bytes]:
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


def _decode(schema: Schema, parts: list[dict]) -> Chunk:
    columns = {}
    for feature in schema.features:
        if feature.kind == "numeric":  # null → NaN
            columns[feature.name] = _joined([np.asarray(p["c"][feature.name], dtype=np.float64) for p in parts])
        else:
            column = _joined([np.asarray(p["c"][feature.name], dtype=object) for p in parts])
            column[pd.isna(column)] = np.nan
            columns[feature.name] = column
    labels = _joined([_labels(p["y"]) for p in parts])
    proba = None
    if parts[0]["p"] is not None:
        proba = _joined([np.asarray(p["p"], dtype=np.float64) for p in parts])
    rows = len(labels)
    return Chunk(parts[0]["r"], int(parts[0]["t"]), rows, columns, labels, proba)


def _labels(values: Any) -> np.ndarray:
    labels = np.asarray(values)
    return labels.astype(object) if labels.dtype.kind in "US" else labels


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
