"""The pass itself: one read of a source, started again until the dialect and the types hold every row.

The source is read as Arrow record batches (pyarrow's streaming CSV reader, or a Parquet file's
batches), so memory stays flat whatever the file's size. pyarrow rather than DuckDB or Polars:
it is installed already, its CSV reader converts at ~100 MB/s per core here, and the batches it
yields are the ones the Parquet writer and the profile consume, with no copy between libraries.
Three threads share the work of a pass: the source is parsed in one (``read_ahead``), each row
group is encoded in another (``canonical``), and the batches are profiled and summarised in the
calling one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from provenflow.data import datasets
from provenflow.data.credentials import Credentials, split_url
from provenflow.data.dialect import Dialect
from provenflow.data.ingest.canonical import CanonicalWriter
from provenflow.data.ingest.csv_source import csv_batches, header_names
from provenflow.data.ingest.json_source import json_batches
from provenflow.data.ingest.parquet_source import parquet_batches
from provenflow.data.ingest.part_summaries import Summarizer, Summary
from provenflow.data.ingest.profiling import SAMPLE_ROWS, Column, Sample, finish_profile
from provenflow.data.ingest.sniffing import Markers, Reencode, next_encoding
from provenflow.data.ingest.sql_source import sql_batches
from provenflow.data.ingest.widening import CONVERSION, Widen, join_types, type_of_value
from provenflow.digest import Digest
from provenflow.errors import DataError, StoreError
from provenflow.read_ahead import ReadAhead
from provenflow.redact import redact
from provenflow.storage.store import ContentStore

# How the reader cuts the source; not part of the canonical form (tests vary it).
BLOCK_BYTES = 8 * 1024 * 1024
SQL_BATCH_ROWS = 50_000


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
    # A source of many files (ingest.many): each file's relative path and raw hash, the version's
    # parts, and the version (a manifest) already in the store.
    files: list[tuple[str, Digest]] = field(default_factory=list)
    parts: list[Digest] = field(default_factory=list)
    stored: bool = False
    unread: int = 0  # files the stat cache knew unchanged (size, mtime, inode): not read again
    summary: Summary | None = None  # a part's summary, made by the pass (ingest(summarize=...))


def ingest(
    source: str,
    workdir: str,
    credentials: Credentials | None = None,
    block_bytes: int = BLOCK_BYTES,
    sample_rows: int = SAMPLE_ROWS,
    constants: dict[str, pa.Scalar] | None = None,
    types: dict[str, pa.DataType] | None = None,
    query: str | None = None,
    table: str | None = None,
    summarize: Callable[[pa.Schema], Summarizer] | None = None,
) -> Ingested:
    """Read SOURCE once as batches; write its canonical Parquet form into WORKDIR and describe it.
    CONSTANTS are columns of one value added to every row (a Hive partition's key=value folders).
    SUMMARIZE makes the summariser a part of a larger table is described by (ingest.many), fed in the
    same pass, so the part is not read back."""
    sql = (query, table) if query or table else None  # SOURCE is then a SQLAlchemy URL
    fmt = "sql" if sql else datasets._format_of(source)
    shown = redact(split_url(source)[0])
    types = dict(types or {})  # a column's type given (a CSV's, joined with its folder's other files)
    how = None  # sniffed once; a pass that finds more (a wider type, a marker, an encoding) starts again
    while True:
        try:
            if how is None:
                how = (
                    Dialect()
                    if sql
                    else datasets.dialect_of(*datasets._open_source(source, credentials), fmt, shown)
                )
            return _one_pass(
                source,
                fmt,
                how,
                workdir,
                credentials,
                block_bytes,
                sample_rows,
                types,
                constants or {},
                sql,
                summarize,
            )
        except Widen as widen:
            types.update(widen.types)
        except Markers as found:
            how = found.how
        except (Reencode, UnicodeDecodeError) as exc:
            how = next_encoding(shown, how, exc)
        except pa.ArrowInvalid as exc:
            if fmt in ("csv", "tsv") and "invalid UTF8" in str(exc):  # a non-UTF-8 byte past the first block
                how = next_encoding(shown, how, exc)
                continue
            match = CONVERSION.search(str(exc))
            if fmt not in ("csv", "tsv") or not match:
                raise _data_error(shown, fmt, exc) from None
            name = header_names(source, how, credentials)[int(match.group(1))]
            current = types.get(name) or pa.type_for_alias(match.group(2))
            value = match.group(3)
            numeric = pa.types.is_integer(current) or pa.types.is_floating(current)
            if numeric and how.is_marker(value) and how.with_marker(value, name) != how:
                how = how.with_marker(value, name)  # '?' for a gap past the first block
                continue
            wider = join_types(current, type_of_value(value))
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
    constants: dict[str, pa.Scalar],
    sql: tuple[str | None, str | None] | None = None,
    summarize: Callable[[pa.Schema], Summarizer] | None = None,
) -> Ingested:
    converted: dict[str, str] = {}
    if sql:
        batches = sql_batches(source, *sql, credentials, SQL_BATCH_ROWS, types, converted)
    elif fmt == "parquet":
        batches = parquet_batches(source, credentials, max(1024, block_bytes // 64), converted, types)
    elif fmt in ("json", "jsonl"):
        batches = json_batches(source, fmt, credentials, block_bytes)
    else:
        batches = csv_batches(source, how, credentials, block_bytes, types)
    if constants:
        batches = _with_constants(source, batches, constants)
    batches = ReadAhead(batches)  # parsed beside the profile and the summary of the batch before
    fd, path = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=workdir)
    os.close(fd)
    try:
        writer = sample = summarizer = None
        columns: dict[str, Column] = {}
        rows = 0
        schema = None
        for batch in batches:
            if writer is None:
                schema = batch.schema
                writer = CanonicalWriter(path, schema)
                sample = Sample(sample_rows)
                columns = {f.name: Column(f.type) for f in schema}
                summarizer = summarize(schema) if summarize else None
            writer.write(batch)
            if summarizer is not None:  # while the writer's thread encodes the batch
                summarizer.add(batch)
            if sample_rows:  # 0: a part of a larger table (ingest.many), described as a whole later
                sample.add(batch, rows)
                for name, array in zip(schema.names, batch.columns, strict=True):
                    columns[name].add(array)
            rows += batch.num_rows
        shown = redact(split_url(source)[0])
        if writer is None or rows == 0:
            if sql:
                raise DataError(f"the query on {shown!r} returned no rows")
            raise DataError(f"{shown!r} has a header but no rows")
        writer.close()
        frame = sample.frame(schema)
        if not sample_rows:
            profile = {"rows": rows, "columns": {f.name: {"dtype": str(f.type)} for f in schema}}
            validated_on = "not validated"
        elif rows <= sample_rows:
            profile = datasets.profile_of(frame)
            validated_on = "all rows"
        else:
            profile = finish_profile(datasets.profile_of(frame), columns, rows, len(frame))
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
                *(
                    {"level": "notice", "message": f"column {name!r}: {what}"}
                    for name, what in converted.items()
                ),
            ],
            summary=summarizer.finish() if summarizer is not None else None,
        )
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        os.unlink(path)
        raise
    finally:
        batches.close()


def _with_constants(source: str, batches, constants: dict[str, pa.Scalar]):
    for batch in batches:
        clash = [name for name in constants if name in batch.schema.names]
        if clash:
            raise DataError(
                f"{redact(split_url(source)[0])!r} has a column {clash[0]!r} and sits in a {clash[0]}=… "
                "partition folder too; rename the column or the folder"
            )
        for name, value in constants.items():
            batch = batch.append_column(name, pa.repeat(value, batch.num_rows))
        yield batch


def _schema(schema: pa.Schema, profile: dict) -> list[dict]:
    """datasets.schema_of's format: the pandas dtype each column loads as."""
    return [{"name": f.name, "dtype": profile["columns"][f.name]["dtype"]} for f in schema]


def store_ingested(store: ContentStore, ingested: Ingested) -> datasets.StoredTable:
    """Move the canonical file into the store (a rename on a local store)."""
    if ingested.stored:
        return datasets.StoredTable(ingested.digest, ingested.size, store.uri(ingested.digest), False)
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
