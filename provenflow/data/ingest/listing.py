"""A source of many files: a folder, a glob or an object-store prefix, listed as one table's files.

Files are taken in the order of their path relative to the folder (or the glob's fixed prefix),
never in the order a filesystem lists them, so the same files give the same table. Hive-style
folders (``region=north/``) become columns, typed by all their values (integers, decimals, else
text), as Spark, pandas, Dask and Polars write and read them. Names starting with ``_`` or ``.``
(``_SUCCESS``, ``.crc``, ``_metadata``) are a writer's bookkeeping, not data, and are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import unquote

import fsspec
import pyarrow as pa

from provenflow.data import datasets
from provenflow.data.credentials import Credentials, split_url, storage_options
from provenflow.errors import DataError
from provenflow.redact import redact
from provenflow.settings import get_settings

_GLOB = re.compile(r"[*?\[]")
_INTEGER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# Spark's partition inference types these as DateType and TimestampType (it writes ':' as %3A).
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")
# How Hive, Spark and pyarrow write a missing partition value.
_NULL_VALUES = ("__HIVE_DEFAULT_PARTITION__", "")


@dataclass(frozen=True)
class SourceFile:
    url: str  # what to open: a local path, or an fsspec URL without credentials
    relative: str  # its path under the listed folder, '/'-separated: its place in the table
    size: int
    stamp: tuple | None  # (size, mtime_ns, inode) when the filesystem gives them: the stat cache's key
    partition: tuple[tuple[str, str | None], ...]  # the key=value folders above it, outermost first


@dataclass(frozen=True)
class Listing:
    shown: str  # the source as it may be printed
    fmt: str
    files: list[SourceFile]
    partitions: dict[str, pa.DataType]  # partition column -> its type, in folder order
    credentials: Credentials | None

    def constants(self, file: SourceFile) -> dict[str, pa.Scalar]:
        """The partition columns' values for FILE's rows."""
        return {
            key: pa.scalar(_typed(value, self.partitions[key]), self.partitions[key])
            for key, value in file.partition
        }


def is_many(source: str) -> bool:
    """Whether SOURCE names many files: a glob, a prefix ending in '/', or a path without a data
    file's extension (then it must be a folder; a single file keeps its old error)."""
    path = split_url(source)[0]
    if _GLOB.search(path.split("://", 1)[-1]) or path.endswith("/"):
        return True
    try:
        datasets._format_of(path)
    except DataError:
        return True
    return False


def list_source(source: str, credentials: Credentials | None = None) -> Listing:
    """The data files of a folder, glob or prefix, with their partition values; a clear error for
    a folder with no data, a glob that matches nothing, or a partition folder not named key=value."""
    url, in_url = split_url(source)
    credentials = credentials or in_url
    shown = redact(url)
    fs, path = fsspec.core.url_to_fs(url, **storage_options(url, credentials))
    glob = bool(_GLOB.search(path))
    try:
        if glob:
            base = _GLOB.split(path, 1)[0].rpartition("/")[0]
            found = fs.glob(path, detail=True)
        else:
            base = path.rstrip("/")
            if not fs.exists(base):
                raise DataError(f"no file or folder at {shown!r}; check the path or URL")
            if not fs.isdir(base):
                datasets._format_of(url)  # a file without a data extension: the format error
            found = fs.find(base, detail=True)
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"cannot list {shown!r}: {redact(str(exc))}") from None
    entries = []
    for name, info in sorted(found.items()):
        if info.get("type") == "directory":
            continue
        relative = name[len(base) :].lstrip("/") if base else name
        if any(part.startswith(("_", ".")) for part in relative.split("/")):
            continue
        entries.append((relative, name, info))
    if not entries:
        what = "no file matches the pattern" if glob else "the folder holds no data file"
        raise DataError(f"{shown!r}: {what}; expected .csv, .tsv, .jsonl, .json or .parquet files")
    limit = get_settings().max_files
    if len(entries) > limit:  # before any file is read: each is a part, a cache entry and ledger links
        raise DataError(
            f"{shown!r} holds {len(entries):,} files, more than the limit of {limit:,}; name fewer with a "
            "glob (say, one month's), merge small files, or raise PROVENFLOW_MAX_FILES"
        )
    formats = {}
    for relative, _, _ in entries:
        try:
            formats.setdefault(datasets._format_of(relative), relative)
        except DataError:
            raise DataError(
                f"{shown!r} holds {relative!r}, which is not a .csv, .tsv, .jsonl, .json or .parquet file; "
                "move it out, or name the data files with a glob"
            ) from None
    if len(formats) > 1:
        (a, first), (b, second) = list(formats.items())[:2]
        raise DataError(
            f"{shown!r} mixes formats: {first!r} is {a} but {second!r} is {b}; one dataset is one format"
        )
    local = fs.protocol in ("file", "local") or "file" in (
        fs.protocol if isinstance(fs.protocol, tuple) else ()
    )
    files = []
    for relative, name, info in entries:
        stamp = _stamp(info)
        files.append(
            SourceFile(
                url=name if local else fs.unstrip_protocol(name),
                relative=relative,
                size=int(info.get("size") or 0),
                stamp=stamp,
                partition=_partition(shown, relative),
            )
        )
    _same_keys(shown, files)
    return Listing(shown, next(iter(formats)), files, _partition_types(files), credentials)


def _stamp(info: dict) -> tuple | None:
    """What says a file is unchanged without reading it: size, modification time and inode (as DVC
    keys its cache), or an object store's ETag; None when the filesystem gives neither."""
    size = info.get("size")
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("created")
    if mtime is None and info.get("ETag") is None:
        return None
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    mtime_ns = round(float(mtime) * 1e9) if mtime is not None else None
    return (size, mtime_ns, info.get("ino") or info.get("ETag"))


def _partition(shown: str, relative: str) -> tuple[tuple[str, str | None], ...]:
    folders = relative.split("/")[:-1]
    pairs = []
    for folder in folders:
        key, eq, value = folder.partition("=")
        if not eq or not key:
            if any("=" in f for f in folders) or pairs:
                raise DataError(
                    f"{shown!r}: the partition folder {folder!r} (of {relative!r}) is not named key=value "
                    "like the others; rename it (e.g. region=north) or move it out"
                )
            return ()
        value = unquote(value)
        pairs.append((unquote(key), None if value in _NULL_VALUES else value))
    return tuple(pairs)


def _same_keys(shown: str, files: list[SourceFile]) -> None:
    if any(f.partition for f in files):
        for file in files:
            plain = [d for d in file.relative.split("/")[:-1] if "=" not in d]
            if plain:
                raise DataError(
                    f"{shown!r}: the partition folder {plain[0]!r} (of {file.relative!r}) is not named "
                    "key=value like the others; rename it (e.g. region=north) or move it out"
                )
    first = files[0]
    keys = [k for k, _ in first.partition]
    for file in files[1:]:
        other = [k for k, _ in file.partition]
        if other != keys:
            raise DataError(
                f"{shown!r}: {file.relative!r} is partitioned by {other or 'nothing'} but {first.relative!r} "
                f"by {keys or 'nothing'}; every file of one dataset sits under the same key=value folders"
            )


def _partition_types(files: list[SourceFile]) -> dict[str, pa.DataType]:
    types: dict[str, pa.DataType] = {}
    for index, (key, _) in enumerate(files[0].partition):
        values = [f.partition[index][1] for f in files if f.partition[index][1] is not None]
        if values and all(_INTEGER.fullmatch(v) for v in values):
            types[key] = pa.int64()
        elif values and all(_DECIMAL.fullmatch(v) for v in values):
            types[key] = pa.float64()
        elif values and all(_DATE.fullmatch(v) and _parses(v, date.fromisoformat) for v in values):
            # A date=2026-11-18/ folder is a date column, as Spark reads it: text, it was taken
            # for an identifier (one value per partition) and left out of every model.
            types[key] = pa.date32()
        elif values and all(_TIMESTAMP.fullmatch(v) and _parses(v, datetime.fromisoformat) for v in values):
            types[key] = pa.timestamp("us")
        else:
            types[key] = pa.string()
    return types


def _parses(value: str, parse) -> bool:
    try:
        parse(value)
    except ValueError:  # 2026-02-30
        return False
    return True


def _typed(value: str | None, dtype: pa.DataType):
    if value is None:
        return None
    if pa.types.is_integer(dtype):
        return int(value)
    if pa.types.is_floating(dtype):
        return float(value)
    if pa.types.is_date(dtype):
        return date.fromisoformat(value)
    if pa.types.is_timestamp(dtype):
        return datetime.fromisoformat(value)
    return value
