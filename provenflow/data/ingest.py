"""A data-run's one pass over a source: canonical Parquet, schema, profile and a bounded sample.

The source is read as Arrow record batches (pyarrow's streaming CSV reader, or a Parquet file's
batches), so memory stays flat whatever the file's size. pyarrow rather than DuckDB or Polars:
it is installed already, its CSV reader converts at ~100 MB/s per core here, and the batches it
yields are the ones the Parquet writer and the profile consume, with no copy between libraries.

The canonical form is defined independently of how the source was cut into batches: rows are
regrouped into row groups of exactly ``ROW_GROUP_ROWS`` (each written from contiguous arrays),
with fixed writer options and no pandas metadata. So the same table gives the same bytes, and the
same hash, on a machine that reads it in smaller batches.

Streaming CSV readers infer types from the first block. A later value the inferred type cannot
hold (``1.5`` in an int64 column) widens that column to the join of both types and the pass starts
again; the result is the type that fits every value, the same as if the whole file were one block.
Dates stay strings, as pandas' ``read_csv`` leaves them (feature handling decides what they are).

How a CSV file is written (separator, encoding, gap markers such as '?', decimal commas, a missing
header row) is sniffed once from its head (dialect.py). What shows only later, a non-UTF-8 byte or a
'?' in a numeric column, changes the dialect and the pass starts again, as a widening does.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from provenflow.data import datasets, dialect, jsonl, parquet_types
from provenflow.data.credentials import Credentials, split_url
from provenflow.data.dialect import FALSE_VALUES, TRUE_VALUES, Dialect
from provenflow.digest import Digest
from provenflow.errors import DataError, StoreError
from provenflow.redact import redact
from provenflow.storage.store import ContentStore

# Part of the canonical form: changing any of these changes every dataset's hash.
ROW_GROUP_ROWS = 128 * 1024
WRITER_OPTIONS = {
    "compression": "zstd",
    "compression_level": 1,
    "write_statistics": True,
    "use_dictionary": True,
    "version": "2.6",
    "data_page_size": 1024 * 1024,
}
# How the reader cuts the source; not part of the canonical form (tests vary it).
BLOCK_BYTES = 8 * 1024 * 1024
# Rows kept in the bounded sample: the whole table below this, so small tables are profiled and
# validated exactly as before; above it, quantiles, histogram shapes and validation use the sample.
SAMPLE_ROWS = 100_000
SAMPLE_SEED = 0
# A categorical column is counted exactly up to this many distinct values; above, its distinct
# count is estimated from the sample and its top values come from the sample too (identifiers, free text).
EXACT_DISTINCT = 10_000

_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to ([^:]+): invalid value '(.*)'", re.S)
_INDEX = re.compile(r"__index_level_(\d+)__")


@dataclass(frozen=True)
class Ingested:
    """What one pass over a source produced: the canonical file (not yet in the store) and its description."""

    path: str
    digest: Digest
    size: int
    rows: int
    schema: list[dict]
    profile: dict
    sample: pd.DataFrame  # the whole table when rows <= SAMPLE_ROWS
    validated_on: str  # "all rows" or "a seeded sample of N of M rows"
    # What was inferred about how the file is written (dialect.Dialect.notes): run warnings to show.
    notes: list[dict] = field(default_factory=list)


# -- reading -------------------------------------------------------------------------------


def _csv_options(
    how: Dialect, block_bytes: int, types: dict[str, pa.DataType]
) -> tuple[pa_csv.ReadOptions, pa_csv.ParseOptions, pa_csv.ConvertOptions]:
    """pyarrow's options for dialect HOW; a plain file gets exactly the options it always had."""
    read = {"block_size": block_bytes}
    if how.encoding != "utf-8":
        read["encoding"] = how.encoding  # transcoded to UTF-8 as it is read
    if how.names is not None:
        read.update(column_names=list(how.names), skip_rows=1 if how.header else 0)
    convert = {
        "strings_can_be_null": True,
        "column_types": types,
        "true_values": list(TRUE_VALUES),
        "false_values": list(FALSE_VALUES),
    }
    if how.markers:
        convert["null_values"] = how.null_values
    if how.decimal_point != ".":
        convert["decimal_point"] = how.decimal_point
    return (
        pa_csv.ReadOptions(**read),
        pa_csv.ParseOptions(delimiter=how.delimiter),
        pa_csv.ConvertOptions(**convert),
    )


@contextlib.contextmanager
def _open_csv(
    source: str,
    how: Dialect,
    credentials: Credentials | None,
    block_bytes: int,
    types: dict[str, pa.DataType],
) -> Iterator[pa_csv.CSVStreamingReader]:
    fs, path = datasets._open_source(source, credentials)
    read, parse, convert = _csv_options(how, block_bytes, types)
    with fs.open(path, "rb", compression="infer") as fh:
        stream = _SkipInitialSpace(fh, how.delimiter) if how.initial_space else fh
        yield pa_csv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)


class _SkipInitialSpace(io.RawIOBase):
    """A CSV byte stream without the spaces after each separator outside quotes: pandas'
    ``skipinitialspace``, which pyarrow's parser lacks ('39, State-gov, "a, b"' → '39,State-gov,"a, b"').

    Works on the bytes before any transcoding: the separator, space and quote are single ASCII
    bytes in UTF-8, cp1252 and latin-1 alike. A chunk is split at its quotes, and only the parts
    outside quotes are rewritten."""

    def __init__(self, raw, delimiter: str) -> None:
        self.raw = raw
        self.delimiter = delimiter.encode()
        self.spaced = self.delimiter + b" "
        self.quoted = False
        self.after_delimiter = False  # the last chunk ended with a separator: drop the next spaces

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while True:
            chunk = self.raw.read(size)
            if not chunk:
                return b""
            out = self._filter(chunk)
            if out:  # (empty only when the chunk was all spaces to drop; b"" would mean the end)
                return out

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _filter(self, chunk: bytes) -> bytes:
        parts = chunk.split(b'"')
        for i, part in enumerate(parts):
            if i:
                self.quoted = not self.quoted
            if self.quoted:
                self.after_delimiter = False
                continue
            if self.after_delimiter:
                part = part.lstrip(b" ")
            while self.spaced in part:  # bytes.replace: 7x faster than re.sub here, one pass per space
                part = part.replace(self.spaced, self.delimiter)
            if part or i < len(parts) - 1:
                self.after_delimiter = part.endswith(self.delimiter) and i == len(parts) - 1
            parts[i] = part
        return b'"'.join(parts)


def _csv_batches(
    source: str,
    how: Dialect,
    credentials: Credentials | None,
    block_bytes: int,
    types: dict[str, pa.DataType],
) -> Iterator[pa.RecordBatch]:
    with _open_csv(source, how, credentials, block_bytes, types) as reader:
        names = reader.schema.names
        _check_names(source, names)
        temporal = {
            f.name: pa.string()
            for f in reader.schema
            if f.name not in types and (pa.types.is_temporal(f.type))
        }
        if temporal:  # pandas never parsed dates; keep them text (restart: only one block was read)
            raise _Widen(temporal)
        if any(pa.types.is_binary(f.type) for f in reader.schema):
            raise _Reencode  # pyarrow keeps bytes that are not UTF-8 as binary in the first block
        batches = iter(reader)
        first = next(batches, None)
        if first is None:
            return
        marked = _first_block_markers(first, how, types)
        if marked != how:  # restart: only one block was read
            raise _Markers(marked)
        yield first
        yield from batches


def _first_block_markers(batch: pa.RecordBatch, how: Dialect, types: dict[str, pa.DataType]) -> Dialect:
    """HOW with the gap markers of the text columns of the first block that are numbers but for
    them ('?' past the sniffed head); later blocks show theirs as conversion errors."""
    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        if name in types or not pa.types.is_string(array.type):
            continue
        values = pc.unique(array.drop_null())
        numbers = pc.match_substring_regex(values, dialect.NUMBER[how.decimal_point])
        if not len(values) or not pc.any(numbers).as_py():
            continue
        markers = dialect.gap_markers(pc.filter(values, pc.invert(numbers)).to_pylist())
        for marker in sorted(markers or ()):
            how = how.with_marker(marker, name)
    return how


def _json_batches(
    source: str, fmt: str, credentials: Credentials | None, block_bytes: int
) -> Iterator[pa.RecordBatch]:
    fs, path = datasets._open_source(source, credentials)
    checked = False
    for batch in jsonl.batches(fs, path, fmt, redact(split_url(source)[0]), block_bytes):
        if not checked:
            _check_names(source, batch.schema.names)
            checked = True
        yield batch


def _parquet_batches(
    source: str, credentials: Credentials | None, batch_rows: int, converted: dict[str, str]
) -> Iterator[pa.RecordBatch]:
    """The file's rows as batches; CONVERTED gets what was done to a column of a type the models
    cannot use (``parquet_types.usable``)."""
    fs, path = datasets._open_source(source, credentials)
    with fs.open(path, "rb") as fh:
        parquet = pq.ParquetFile(fh)
        schema = parquet.schema_arrow
        _check_names(source, schema.names)
        index, range_index = _kept_index(schema)
        offset = 0
        for batch in parquet.iter_batches(batch_size=batch_rows):
            columns = dict(zip(batch.schema.names, batch.columns, strict=True))
            front = {}
            if range_index is not None:
                name, start, step = range_index
                front[name] = pa.array(start + step * np.arange(offset, offset + batch.num_rows), pa.int64())
            for stored, name in index:
                front[name] = columns.pop(stored)
            for stored in [n for n in columns if _INDEX.fullmatch(n) or n in dict(index)]:
                columns.pop(stored)  # an index pandas would drop (a default RangeIndex has no column)
            merged = {**front, **columns}
            arrays = []
            for name, array in merged.items():
                if pa.types.is_dictionary(array.type):
                    array = array.dictionary_decode()
                array, what = parquet_types.usable(array)
                if what is not None:
                    converted.setdefault(name, what)
                arrays.append(array)
            offset += batch.num_rows
            yield pa.RecordBatch.from_arrays(arrays, names=list(merged))


def _kept_index(schema: pa.Schema) -> tuple[list[tuple[str, str]], tuple[str, int, int] | None]:
    """A pandas index is data too (the rule ``read_table`` keeps): its columns move to the front,
    named as ``reset_index`` names them; only a default RangeIndex (0, 1, unnamed) is dropped."""
    meta = schema.pandas_metadata or {}
    indexes = meta.get("index_columns") or []
    kept: list[tuple[str, str]] = []
    ranged = None
    for level, item in enumerate(indexes):
        if isinstance(item, dict):
            if item.get("kind") == "range" and (item.get("name") or item["start"] != 0 or item["step"] != 1):
                ranged = (item.get("name") or "index", int(item["start"]), int(item["step"]))
            continue
        m = _INDEX.fullmatch(item)
        name = item if not m else ("index" if len(indexes) == 1 else f"level_{level}")
        kept.append((item, name))
    return kept, ranged


def _check_names(source: str, names: list[str]) -> None:
    shown = redact(split_url(source)[0])
    datasets._refuse_duplicates(shown, names)
    if any(n == "" for n in names):
        raise DataError(f"{shown!r} has a column without a header name; every column needs a name")


class _Reencode(Exception):
    """The source is not text in the dialect's encoding: the pass starts again in the next one."""


class _Markers(Exception):
    """Gap markers were found in the first block: the pass starts again with this dialect."""

    def __init__(self, how: Dialect) -> None:
        self.how = how


class _Widen(Exception):
    """A column's type must change; the pass starts again with these types."""

    def __init__(self, types: dict[str, pa.DataType]) -> None:
        self.types = types


def _type_of_value(value: str) -> pa.DataType:
    table = pa_csv.read_csv(pa.py_buffer(b"v\n" + value.encode() + b"\n"))
    return table.schema[0].type


def _join(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The narrowest type holding values of both; never a date (those stay text)."""
    if a == b:
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(t(a) for t in numeric) and any(t(b) for t in numeric):
        return pa.float64()
    return pa.string()


# -- the canonical writer --------------------------------------------------------------------


class _CanonicalWriter:
    """Rows regrouped into row groups of exactly ROW_GROUP_ROWS, whatever batches come in.

    Each row group is encoded and compressed in a thread (pyarrow releases the GIL) while the next
    batches are parsed and profiled: on two cores the pass then takes about as long as the parse.
    At most one row group is in flight, so memory stays bounded."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self.schema = schema.remove_metadata()
        self.writer = pq.ParquetWriter(path, self.schema, **WRITER_OPTIONS)
        self.pending: list[pa.RecordBatch] = []
        self.rows = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="provenflow-parquet")
        self.writing: Future | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.rows += batch.num_rows
        while self.rows >= ROW_GROUP_ROWS:
            table = pa.Table.from_batches(self.pending, self.schema)
            self._group(table.slice(0, ROW_GROUP_ROWS))
            rest = table.slice(ROW_GROUP_ROWS)
            self.pending, self.rows = rest.to_batches(), rest.num_rows

    def _group(self, table: pa.Table) -> None:
        self._wait()
        # Contiguous arrays: page boundaries must not depend on where the batches were cut.
        self.writing = self.pool.submit(self.writer.write_table, table.combine_chunks(), ROW_GROUP_ROWS)

    def _wait(self) -> None:
        if self.writing is not None:
            self.writing.result()
            self.writing = None

    def close(self) -> None:
        try:
            if self.rows:
                self._group(pa.Table.from_batches(self.pending, self.schema))
            self._wait()
        finally:
            self.pool.shutdown(wait=True)
            self.writer.close()


# -- the sample and the streamed statistics -------------------------------------------------


def _row_keys(start: int, count: int) -> np.ndarray:
    """A pseudo-random key per row from its position (splitmix64): the sample is the rows with the
    smallest keys, so it does not depend on batch sizes and is the same on every re-run."""
    with np.errstate(over="ignore"):
        z = np.arange(start, start + count, dtype=np.uint64) + np.uint64(
            0x9E3779B97F4A7C15 * (SAMPLE_SEED + 1) % 2**64
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class _Sample:
    def __init__(self, size: int) -> None:
        self.size = size
        self.tables: list[pa.Table] = []
        self.keys: list[np.ndarray] = []
        self.kept = 0
        self.threshold = np.iinfo(np.uint64).max

    def add(self, batch: pa.RecordBatch, start: int) -> None:
        keys = _row_keys(start, batch.num_rows)
        chosen = np.flatnonzero(keys < self.threshold) if self.kept >= self.size else None
        if chosen is not None and not len(chosen):
            return
        table = pa.Table.from_batches([batch])
        table = table.append_column("__row", pa.array(np.arange(start, start + batch.num_rows), pa.int64()))
        if chosen is not None:
            table, keys = table.take(chosen), keys[chosen]
        self.tables.append(table)
        self.keys.append(keys)
        self.kept += len(keys)
        if self.kept >= 2 * self.size:
            self._compact()

    def _compact(self) -> None:
        keys = np.concatenate(self.keys)
        table = pa.concat_tables(self.tables)
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            table, keys = table.take(keep), keys[keep]
            self.threshold = keys.max()
        self.tables, self.keys, self.kept = [table], [keys], len(keys)

    def frame(self, schema: pa.Schema) -> pd.DataFrame:
        if not self.tables:
            return schema.empty_table().to_pandas()
        self._compact()
        table = self.tables[0]
        table = table.take(pc.sort_indices(table["__row"])).drop_columns(["__row"])
        return table.to_pandas()


class _Column:
    """Exact statistics of one column over every row: counts, moments, extremes, value counts."""

    def __init__(self, dtype: pa.DataType) -> None:
        self.numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)
        self.integer = pa.types.is_integer(dtype)
        self.missing = 0
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.low = np.inf
        self.high = -np.inf
        self.infinite = 0
        self.counts: dict | None = {}  # None once there are too many distinct values to count

    def add(self, array: pa.Array) -> None:
        if self.numeric:
            values = array.drop_null().to_numpy(zero_copy_only=False).astype("float64", copy=False)
            nan = np.isnan(values)
            if nan.any():
                values = values[~nan]
            self.missing += len(array) - len(values)
            self._moments(values)
            if self.counts is not None and len(values):
                self._count(*np.unique(values, return_counts=True), limit=datasets.DISCRETE_VALUES)
        else:
            self.missing += array.null_count
            self.count += len(array) - array.null_count
            if self.counts is not None:
                counted = pc.value_counts(array.drop_null())
                self._count(counted.field(0).to_pylist(), counted.field(1).to_numpy(), limit=EXACT_DISTINCT)

    def _moments(self, values: np.ndarray) -> None:
        n = len(values)
        if not n:
            return
        inf = np.isinf(values)
        self.infinite += int(inf.sum())
        self.low, self.high = min(self.low, values.min()), max(self.high, values.max())
        with np.errstate(invalid="ignore", over="ignore"):
            mean = values.mean()
            m2 = float(((values - mean) ** 2).sum())
            total = self.count + n
            delta = mean - self.mean
            # Chan et al.'s merge of two partial variances.
            self.m2 += m2 + delta * delta * self.count * n / total
            self.mean += delta * n / total
        self.count = total

    def _count(self, values, counts, limit: int) -> None:
        merged = self.counts
        for value, count in zip(values, counts, strict=True):
            merged[value] = merged.get(value, 0) + int(count)
        if len(merged) > limit:
            self.counts = None


def _finish_profile(sample_profile: dict, columns: dict[str, _Column], rows: int, sample_rows: int) -> dict:
    """The profile of the whole table in profile_of's format: exact counts and moments from the
    stream, quantiles and histogram shape from the sample (histogram counts scaled to the rows)."""
    out = {}
    for name, entry in sample_profile["columns"].items():
        stats = columns[name]
        sample_count = entry["count"]
        entry = dict(entry, missing=stats.missing, count=stats.count)
        if isinstance(entry.get("dates"), int):  # an additive count (dates.count_dates): scale it
            entry["dates"] = round(entry["dates"] * stats.count / max(sample_count, 1))
        if stats.integer and stats.missing and entry["dtype"].startswith("int"):
            entry["dtype"] = "float64"  # as pandas reads an integer column with gaps
        if entry.get("kind") == "numeric" and stats.numeric:
            finite_total = stats.count - stats.infinite
            counts = np.asarray(entry["histogram"]["counts"], dtype="float64")
            entry["histogram"] = dict(entry["histogram"], counts=_scaled(counts, finite_total))
            entry.update(
                infinite=stats.infinite,
                mean=datasets._finite(stats.mean) if not stats.infinite else None,
                std=datasets._finite(np.sqrt(stats.m2 / (stats.count - 1))) if stats.count > 1 else 0.0,
                min=datasets._finite(stats.low),
                max=datasets._finite(stats.high),
            )
            entry.pop("values", None)
            if stats.counts is not None:
                ordered = sorted(stats.counts.items(), key=lambda kv: -kv[1])
                entry["values"] = {datasets.number_key(v): c for v, c in ordered}
        elif entry.get("kind") == "categorical" and stats.counts is not None:
            freq = pd.Series({str(k): v for k, v in stats.counts.items()}, dtype="int64")
            freq = freq.groupby(level=0).sum().sort_values(ascending=False, kind="stable")
            entry.update(
                distinct=int(freq.size),
                frequencies={str(k): int(v) for k, v in freq.head(datasets.TOP_CATEGORIES).items()},
                other=int(freq.iloc[datasets.TOP_CATEGORIES :].sum()),
            )
        elif entry.get("kind") == "categorical":
            scale = stats.count / max(sample_count, 1)
            entry.update(
                distinct=_estimated_distinct(entry["distinct"], sample_rows, rows),
                distinct_estimated=True,
                frequencies={k: round(v * scale) for k, v in entry["frequencies"].items()},
                other=max(stats.count - sum(round(v * scale) for v in entry["frequencies"].values()), 0),
            )
        out[name] = entry
    return {"rows": rows, "columns": out, "sample": {"rows": sample_rows, "seed": SAMPLE_SEED}}


def _scaled(counts: np.ndarray, total: int) -> list[int]:
    """Counts scaled to sum to TOTAL exactly (largest remainders get the rounding)."""
    if counts.sum() == 0:
        return [int(c) for c in counts]
    exact = counts * (total / counts.sum())
    floor = np.floor(exact).astype("int64")
    short = int(total - floor.sum())
    floor[np.argsort(floor - exact)[:short]] += 1
    return [int(c) for c in floor]


def _estimated_distinct(in_sample: int, sample_rows: int, rows: int) -> int:
    """A column whose sample is almost all distinct values is an identifier: scale with the rows."""
    return round(in_sample * rows / sample_rows) if in_sample > 0.5 * sample_rows else in_sample


# -- the pass ------------------------------------------------------------------------------


def ingest(
    source: str,
    workdir: str,
    credentials: Credentials | None = None,
    block_bytes: int = BLOCK_BYTES,
    sample_rows: int = SAMPLE_ROWS,
) -> Ingested:
    """Read SOURCE once as batches; write its canonical Parquet form into WORKDIR and describe it."""
    fmt = datasets._format_of(source)
    shown = redact(split_url(source)[0])
    types: dict[str, pa.DataType] = {}
    how = None  # sniffed once; a pass that finds more (a wider type, a marker, an encoding) starts again
    while True:
        try:
            if how is None:
                how = datasets.dialect_of(*datasets._open_source(source, credentials), fmt, shown)
            return _one_pass(source, fmt, how, workdir, credentials, block_bytes, sample_rows, types)
        except _Widen as widen:
            types.update(widen.types)
        except _Markers as found:
            how = found.how
        except (_Reencode, UnicodeDecodeError) as exc:
            how = _next_encoding(shown, how, exc)
        except pa.ArrowInvalid as exc:
            if fmt in ("csv", "tsv") and "invalid UTF8" in str(exc):  # a non-UTF-8 byte past the first block
                how = _next_encoding(shown, how, exc)
                continue
            match = _CONVERSION.search(str(exc))
            if fmt not in ("csv", "tsv") or not match:
                raise _data_error(shown, fmt, exc) from None
            name = _header(source, how, credentials)[int(match.group(1))]
            current = types.get(name) or pa.type_for_alias(match.group(2))
            value = match.group(3)
            numeric = pa.types.is_integer(current) or pa.types.is_floating(current)
            if numeric and how.is_marker(value) and how.with_marker(value, name) != how:
                how = how.with_marker(value, name)  # '?' for a gap past the first block
                continue
            wider = _join(current, _type_of_value(value))
            if wider == current:
                raise _data_error(shown, fmt, exc) from None
            types[name] = wider
            if pa.types.is_string(wider):
                how = how.without_column(name)  # text after all: its markers are not gaps
        except (OSError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StoreError(
                    f"cannot store a Parquet copy of {shown!r} in {workdir}: {os.strerror(exc.errno)}. "
                    "Free space there, or point PROVENFLOW_STORE_URL (or the store block) at a larger volume."
                ) from None
            raise _data_error(shown, fmt, exc) from None


def _next_encoding(shown: str, how: Dialect, exc: Exception) -> Dialect:
    """HOW in the next encoding to try (cp1252, then latin-1, which reads any byte)."""
    following = how.next_encoding()
    if following is None:
        raise DataError(
            f"{shown!r} is not text in UTF-8 or any other encoding ({exc}); is it really CSV?"
        ) from None
    return following


def _header(source: str, how: Dialect, credentials: Credentials | None) -> list[str]:
    if how.names is not None:
        return list(how.names)
    with _open_csv(source, how, credentials, 64 * 1024, {}) as reader:
        return reader.schema.names


def _data_error(shown: str, fmt: str, exc: Exception) -> DataError:
    text = redact(str(exc).strip())
    if "invalid UTF8" in text:
        return DataError(f"{shown!r} is not text in UTF-8 ({text}); is it really CSV?")
    if fmt != "parquet" and ("CSV parse error" in text or "conversion error" in text):
        return DataError(f"{shown!r} could not be parsed as CSV: {text}")
    if "Empty CSV file" in text:
        return DataError(f"{shown!r} has no columns; expected a CSV header and rows")
    return DataError(f"{shown!r} could not be read as {fmt}: {text}")


def _one_pass(
    source: str,
    fmt: str,
    how: Dialect,
    workdir: str,
    credentials: Credentials | None,
    block_bytes: int,
    sample_rows: int,
    types: dict[str, pa.DataType],
) -> Ingested:
    converted: dict[str, str] = {}
    if fmt == "parquet":
        batches = _parquet_batches(source, credentials, max(1024, block_bytes // 64), converted)
    elif fmt in ("json", "jsonl"):
        batches = _json_batches(source, fmt, credentials, block_bytes)
    else:
        batches = _csv_batches(source, how, credentials, block_bytes, types)
    fd, path = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=workdir)
    os.close(fd)
    try:
        writer = sample = None
        columns: dict[str, _Column] = {}
        rows = 0
        schema = None
        for batch in batches:
            if writer is None:
                schema = batch.schema
                writer = _CanonicalWriter(path, schema)
                sample = _Sample(sample_rows)
                columns = {f.name: _Column(f.type) for f in schema}
            writer.write(batch)
            sample.add(batch, rows)
            for name, array in zip(schema.names, batch.columns, strict=True):
                columns[name].add(array)
            rows += batch.num_rows
        shown = redact(split_url(source)[0])
        if writer is None or rows == 0:
            raise DataError(f"{shown!r} has a header but no rows")
        writer.close()
        frame = sample.frame(schema)
        if rows <= sample_rows:
            profile = datasets.profile_of(frame)
            validated_on = "all rows"
        else:
            profile = _finish_profile(datasets.profile_of(frame), columns, rows, len(frame))
            validated_on = f"a seeded sample of {len(frame):,} of {rows:,} rows"
        return Ingested(
            path=path,
            digest=Digest.of_file(path),
            size=os.path.getsize(path),
            rows=rows,
            schema=_schema(schema, profile),
            profile=profile,
            sample=frame,
            validated_on=validated_on,
            notes=[
                *how.notes(),
                *({"level": "notice", "message": f"column {name!r}: {what}"} for name, what in converted.items()),
            ],
        )
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        os.unlink(path)
        raise


def _schema(schema: pa.Schema, profile: dict) -> list[dict]:
    """datasets.schema_of's format: the pandas dtype each column loads as."""
    return [{"name": f.name, "dtype": profile["columns"][f.name]["dtype"]} for f in schema]


def store_ingested(store: ContentStore, ingested: Ingested) -> datasets.StoredTable:
    """Move the canonical file into the store (a rename on a local store)."""
    stored = store.put_file(ingested.path, ingested.digest, move=True)
    return datasets.StoredTable(
        stored.digest, stored.size, store.uri(stored.digest), stored.created, stored.repaired
    )


def workdir_for(store: ContentStore) -> str:
    """Where the canonical file is written: the store's staging folder when local (one rename to
    store it, and a killed run's leftover is swept like any other), else the system's temp folder."""
    if store.local:
        os.makedirs(store.tmp_dir, exist_ok=True)
        return store.tmp_dir
    return tempfile.gettempdir()
