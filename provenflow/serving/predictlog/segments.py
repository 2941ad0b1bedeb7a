"""Segments: the Parquet files the log is made of, and what their names say.

``{first}_{last}_{id}-{seq}.parquet``: ``first``/``last`` are the UTC times of the segment's first
and last row (``20260102T030405123456Z``), so names sort by time and a reader can skip segments
outside a time window without opening them; ``id-seq`` names the write-ahead file the segment was
made from (``id`` is random per server process, so workers and restarts never write the same name).
A segment appears whole or not at all: local segments are written under a hidden temporary name,
fsynced and renamed; object stores make a PUT visible only once it completes.
"""

from __future__ import annotations

import io
import os
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import fsspec
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from provenflow.serving.predictlog.schema import ArrowRows, Chunk, Schema

_STAMP = "%Y%m%dT%H%M%S%fZ"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def log_folder(store_url: str, model_name: str, version: int | str) -> str:
    """The URL of one model version's log folder."""
    return f"{store_url.rstrip('/')}/predictions/{quote(model_name, safe='')}/{version}"


def write_segment(
    fs: fsspec.AbstractFileSystem, folder: str, schema: Schema, chunks: list[Chunk], tag: str
) -> str:
    """Write ``chunks`` as ``{first}_{last}_{tag}.parquet``. The name depends only on the rows and
    the write-ahead file, so writing the same file's rows twice (a crash after the segment was
    stored but before its write-ahead file was deleted) replaces the segment with itself."""
    name, data = encode_segment(schema, chunks, tag)
    return store_segment(fs, folder, name, data)


def encode_segment(schema: Schema, chunks: list[Chunk | ArrowRows], tag: str) -> tuple[str, bytes]:
    """A segment's file name and Parquet bytes (``write_segment`` without the storing)."""
    table = schema.table(chunks)
    times = [c.time_us for c in chunks]
    name = f"{_stamp(min(times))}_{_stamp(max(times))}_{tag}.parquet"
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return name, buffer.getvalue()


def store_segment(fs: fsspec.AbstractFileSystem, folder: str, name: str, data: bytes) -> str:
    target = f"{folder}/{name}"
    if isinstance(fs, LocalFileSystem):
        write_local(target, data)
    else:
        fs.pipe_file(target, data)
    return target


def _stamp(time_us: int) -> str:
    # Exact integer arithmetic: a name that rounded down could make a reader skip its last rows.
    return (_EPOCH + timedelta(microseconds=time_us)).strftime(_STAMP)


def write_local(target: str, data: bytes) -> None:
    folder, name = os.path.split(target)
    # A name of its own: recovery in another process may write the same segment at the same time
    # (a builder that outlived its server), and two writers of one temporary file could rename a torn one.
    tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex[:8]}-{name}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, target)


def tag_of_segment(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".parquet").rsplit("_", 1)[-1]


def is_segment(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".parquet") and not name.startswith(".")


def may_overlap(path: str, since: datetime | None, until: datetime | None) -> bool:
    """Decide from the name alone; a name that does not parse is read (and filtered) anyway."""
    parts = path.rsplit("/", 1)[-1].split("_")
    try:
        first = datetime.strptime(parts[0], _STAMP).replace(tzinfo=UTC)
        last = datetime.strptime(parts[1], _STAMP).replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return True
    return not (
        (since is not None and last < as_utc(since)) or (until is not None and first >= as_utc(until))
    )


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
