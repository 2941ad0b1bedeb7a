"""Tabular data: reading a source, its canonical Parquet form, schema and column profile."""

from __future__ import annotations

import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from provenflow.data import dialect, manifest
from provenflow.data.credentials import Credentials, split_url, storage_options
from provenflow.data.dates import count_dates
from provenflow.data.dialect import Dialect
from provenflow.digest import Digest
from provenflow.errors import DataError
from provenflow.redact import redact
from provenflow.storage.store import ContentStore, Stored

PARQUET = "parquet"
# Quantiles kept in every numeric profile; the drift monitor bins current data on these edges.
QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
TOP_CATEGORIES = 50
# Numeric columns with at most this many distinct values also keep exact value counts: quantile bins
# cannot see a shift in a 0/1 column, value counts can.
DISCRETE_VALUES = 20


def number_key(value: float) -> str:
    """How a numeric value is named in a profile's value counts: 1, 1.0 and np.int64(1) alike."""
    return repr(float(value))


_COMPRESSION = (".gz", ".bz2", ".zst", ".xz")
_MANGLED = re.compile(r".*\.[0-9]+")


def _format_of(source: str) -> str:
    lower = source.lower()
    for suffix in _COMPRESSION:
        lower = lower.removesuffix(suffix)
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".tsv"):
        return "tsv"
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lower.endswith(".json"):
        return "json"
    raise DataError(
        f"cannot tell the format of {redact(source)!r}: expected a .csv, .tsv, .jsonl, .json (optionally "
        "compressed) or .parquet file"
    )


def dialect_of(fs, path: str, fmt: str, shown: str) -> Dialect:
    """How to read the CSV file at PATH, from its first 64 KiB (dialect.sniff); other formats have none."""
    if fmt not in ("csv", "tsv"):
        return Dialect()
    with fs.open(path, "rb", compression="infer") as fh:
        head = fh.read(dialect.SNIFF_BYTES)
    return dialect.sniff(head, fmt, shown)


def check_source(source: str, credentials: Credentials | None) -> None:
    """DataError (one line) unless SOURCE is a non-empty file that CREDENTIALS may read."""
    _open_source(source, credentials)


def _open_source(source: str, credentials: Credentials | None):
    """The filesystem and path of SOURCE, authenticated with CREDENTIALS (or those in its URL, or the
    environment's), after checking that a non-empty file is there."""
    url, in_url = split_url(source)
    shown = redact(url)
    fs, path = fsspec.core.url_to_fs(url, **storage_options(url, credentials or in_url))
    try:
        info = fs.info(path)
    except Exception as exc:
        cause = exc.__cause__ or exc  # fsspec's HTTP filesystem raises FileNotFoundError from the real error
        status = getattr(cause, "status", None)  # aiohttp's ClientResponseError
        if status in (401, 403):
            how = (
                "the credentials given were refused" if credentials or in_url else "no credentials were given"
            )
            raise DataError(
                f"{shown!r} refused access (HTTP {status}): {how}; give them in a Prefect Secret block "
                "(source_credentials, or user:password@ in the CLI's --source) or in ~/.netrc"
            ) from None
        if status not in (None, 404):
            raise DataError(f"{shown!r} answered HTTP {status}; check the URL") from None
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
            raise DataError(f"cannot reach {shown!r}: {redact(str(cause))}") from None
        if isinstance(exc, FileNotFoundError):
            raise DataError(f"no file at {shown!r}; check the path or URL") from None
        raise
    if info.get("type") == "directory":
        raise DataError(f"{shown!r} is a folder; give a CSV or Parquet file")
    if info.get("size") == 0:
        raise DataError(f"{shown!r} is empty (0 bytes); expected a CSV header and rows")
    return fs, path


def read_table(source: str, credentials: Credentials | None = None) -> pd.DataFrame:
    """Read a CSV, TSV or Parquet file from a path or fsspec URL, with a clear error for bad input.

    CREDENTIALS authenticate a URL; a URL's own ``user:password@`` is taken out of it first, so it
    never reaches fsspec, its messages or anything recorded. A CSV file is read in its dialect
    (separator, encoding, gap markers, decimal mark, header: see read_csv), as a data-run reads it."""
    return read_csv(source, credentials)[0]


def read_csv(source: str, credentials: Credentials | None = None) -> tuple[pd.DataFrame, Dialect]:
    """read_table's frame and the dialect the file was read in (its notes say what was inferred)."""
    fmt = _format_of(source)
    shown = redact(split_url(source)[0])
    how = Dialect()
    try:
        fs, path = _open_source(source, credentials)
        if fmt == "parquet":
            with fs.open(path, "rb") as fh:
                _refuse_duplicates(shown, pq.ParquetFile(fh).schema_arrow.names)
                fh.seek(0)
                frame = pd.read_parquet(fh)
        elif fmt in ("json", "jsonl"):
            from provenflow.data import jsonl

            table = pa.Table.from_batches(list(jsonl.batches(fs, path, fmt, shown, 8 * 1024 * 1024)))
            _refuse_duplicates(shown, table.schema.names)
            frame = table.to_pandas()
        else:
            frame, how = _read_csv_in(fs, path, dialect_of(fs, path, fmt, shown))
            # pandas renames a repeated header 'a' to 'a.1' without a word. Only when a name looks like
            # that, read the header row again as data (same parser, one row; a stream cannot seek back).
            if how.header and any(_MANGLED.fullmatch(str(c)) for c in frame.columns):
                with fs.open(path, "rb", compression="infer") as fh:
                    header = pd.read_csv(
                        fh, sep=how.delimiter, encoding=how.encoding, skipinitialspace=how.initial_space,
                        header=None, nrows=1, dtype=str, keep_default_na=False,
                    )  # fmt: skip
                _refuse_duplicates(shown, header.iloc[0].tolist())
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{shown!r} has no columns; expected a CSV header and rows") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{shown!r} could not be parsed as CSV: {str(exc).strip()}") from None
    except ImportError as exc:
        raise DataError(f"reading {shown!r} needs a package that is not installed: {exc}") from None
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise DataError(f"{shown!r} could not be read as {fmt}: {redact(str(exc))}") from None
    index = frame.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None):
        frame = frame.reset_index()  # a Parquet index is data too: keep it as columns
    if frame.empty:
        raise DataError(f"{shown!r} has a header but no rows")
    _refuse_duplicates(shown, frame.columns.tolist())
    if any(str(c).startswith("Unnamed: ") for c in frame.columns):
        raise DataError(f"{shown!r} has a column without a header name; every column needs a name")
    return frame, how


def _read_csv_in(fs, path: str, how: Dialect) -> tuple[pd.DataFrame, Dialect]:
    """The file read with pandas in dialect HOW, settled as the pyarrow reader settles it: a
    non-UTF-8 byte past the sniffed head moves to the next encoding, and a column that is numeric
    but for gap markers past the head gets them read as missing."""
    while True:
        try:
            with fs.open(path, "rb", compression="infer") as fh:
                frame = pd.read_csv(fh, **how.pandas_options())
        except UnicodeDecodeError:
            # latin-1 decodes every byte, so this ends.
            how = how.next_encoding()
            continue
        settled = _settle_markers(frame, how)
        if settled == how:
            return frame, how
        how = settled


def _settle_markers(frame: pd.DataFrame, how: Dialect) -> Dialect:
    for name, series in frame.items():
        if is_numeric(series) or pd.api.types.is_bool_dtype(series):
            continue
        values = [str(v) for v in series.dropna().unique()]
        others = [v for v in values if not dialect.is_number(v, how.decimal_point)]
        markers = dialect.gap_markers(others) if len(others) < len(values) else None
        if markers:
            for marker in sorted(markers):
                how = how.with_marker(marker, str(name))
        elif any(str(name) in columns for _, columns in how.markers):
            how = how.without_column(str(name))  # text after all: its markers are not gaps
    return how


def _refuse_duplicates(shown: str, names: list) -> None:
    """Two columns of one name cannot both be kept; a blank name is left to the unnamed-column check."""
    seen: dict = {}
    for name in names:
        if name != "":
            seen[name] = seen.get(name, 0) + 1
    repeated = [name for name, count in seen.items() if count > 1]
    if repeated:
        raise DataError(
            f"{shown!r} has duplicate column names: {', '.join(repr(str(n)) for n in repeated)}; "
            "rename them so each column has its own name"
        )


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The canonical stored form: same frame and library versions → same bytes → same hash."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", write_statistics=True)
    return buffer.getvalue()


def schema_of(frame: pd.DataFrame) -> list[dict]:
    return [{"name": str(name), "dtype": str(dtype)} for name, dtype in frame.dtypes.items()]


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity (and PostgreSQL's JSON refuses them): those become null."""
    value = float(value)
    return value if np.isfinite(value) else None


def profile_of(frame: pd.DataFrame) -> dict:
    """Per-column statistics, kept with the dataset version as the drift reference."""
    columns = {}
    for name, series in frame.items():
        missing = int(series.isna().sum())
        entry: dict = {"dtype": str(series.dtype), "missing": missing, "count": int(len(series) - missing)}
        present = series.dropna()
        if is_numeric(series) and len(present):
            # Sorted once: the quantiles, the edges and the histogram then need no partition or sort
            # of their own (np.quantile picks the same elements; the counts are np.histogram's).
            values = present.to_numpy(dtype="float64")  # in row order: the moments' sums depend on it
            ordered = np.sort(values)
            finite = ordered[np.isfinite(ordered)]
            edges = np.unique(np.quantile(finite, QUANTILES)) if len(finite) else np.array([0.0])
            counts = _histogram(finite, edges) if len(edges) > 1 else np.array([len(finite)])
            entry.update(
                kind="numeric",
                infinite=int(np.isinf(values).sum()),
                mean=_finite(values.mean()),
                std=_finite(values.std(ddof=1)) if len(values) > 1 else 0.0,
                min=_finite(values.min()),
                max=_finite(values.max()),
                quantiles={
                    str(q): float(v) for q, v in zip(QUANTILES, np.quantile(ordered, QUANTILES), strict=False)
                },
                histogram={"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
            )
            # A look at the first rows spares a full count of a column that is plainly continuous.
            if len(np.unique(values[:1000])) <= DISCRETE_VALUES:
                distinct = present.value_counts()
                if len(distinct) <= DISCRETE_VALUES:
                    entry["values"] = {number_key(v): int(c) for v, c in distinct.items()}
        else:
            if pd.api.types.is_bool_dtype(present.dtype):  # two values: counted, then named as text
                freq = present.value_counts()
                freq.index = freq.index.map(str)
            elif pd.api.types.is_string_dtype(present.dtype) and present.dtype != object:
                freq = present.value_counts()
            else:
                freq = present.astype(str).value_counts()
            top = freq.head(TOP_CATEGORIES)
            entry.update(
                kind="categorical",
                distinct=int(freq.size),
                frequencies={str(k): int(v) for k, v in top.items()},
                other=int(freq.iloc[TOP_CATEGORIES:].sum()),
            )
            if not pd.api.types.is_datetime64_any_dtype(series):  # for the column's role (features.py)
                entry["dates"] = count_dates(present)
        columns[str(name)] = entry
    return {"rows": len(frame), "columns": columns}


def _histogram(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """np.histogram(ordered, bins=edges) of an already sorted array (its own algorithm, less its sort)."""
    cumulative = np.concatenate(
        [ordered.searchsorted(edges[:-1], "left"), ordered.searchsorted(edges[-1:], "right")]
    )
    return np.diff(cumulative)


@dataclass(frozen=True)
class StoredTable:
    digest: Digest
    size: int
    uri: str
    created: bool
    repaired: bool = False  # a damaged object of the same content was replaced


def store_table(store: ContentStore, frame: pd.DataFrame) -> StoredTable:
    stored = store.put_bytes(to_parquet_bytes(frame))
    return StoredTable(stored.digest, stored.size, store.uri(stored.digest), stored.created, stored.repaired)


def store_source(store: ContentStore, source: str, credentials: Credentials | None = None) -> Stored:
    """Store a source file's raw bytes, from a local path or any fsspec URL."""
    fs, path = _open_source(source, credentials)
    if isinstance(fs, LocalFileSystem):
        return store.put_file(path)
    with tempfile.TemporaryDirectory(prefix="provenflow-source-") as tmp:
        local = Path(tmp) / Path(path).name
        fs.get_file(path, str(local))
        return store.put_file(local)


def load_table(store: ContentStore, digest: Digest) -> pd.DataFrame:
    """A stored dataset version, verified against its hash before it is parsed (a manifest's
    parts each against theirs, assembled in the manifest's order)."""
    data = store.read_bytes(digest)
    if not manifest.is_manifest(data):
        return pd.read_parquet(io.BytesIO(data))
    return load_arrow(store, digest, data).to_pandas()


def load_arrow(store: ContentStore, digest: Digest, data: bytes | None = None) -> pa.Table:
    """A stored dataset version as one Arrow table, a manifest's parts concatenated."""
    data = store.read_bytes(digest) if data is None else data
    if not manifest.is_manifest(data):
        return pq.read_table(io.BytesIO(data))
    listed = manifest.Manifest.from_bytes(data)
    return pa.concat_tables(pq.read_table(io.BytesIO(store.read_bytes(p.digest))) for p in listed.parts)


def _parts(store: ContentStore, digest: Digest) -> list[Digest]:
    """The Parquet objects of a version: itself, or a manifest's parts (every one verified)."""
    if store.local:
        store.check(digest)
        with open(store.path(digest), "rb") as fh:
            head = fh.read(len(manifest.MAGIC))
        if not manifest.is_manifest(head):
            return [digest]
    data = store.read_bytes(digest)
    if not manifest.is_manifest(data):
        return [digest]
    parts = [p.digest for p in manifest.Manifest.from_bytes(data).parts]
    for part in parts:
        store.check(part)
    return parts


# A model run on a dataset of more rows than this trains on a seeded sample of this many by default.
TRAIN_SAMPLE_ROWS = 1_000_000


def sample_size(rows: int, requested: int | None) -> int:
    """The rows a model run trains on: REQUESTED (0: all), by default all up to TRAIN_SAMPLE_ROWS."""
    if requested is None:
        return min(rows, TRAIN_SAMPLE_ROWS)
    if requested < 0:
        raise DataError(f"sample must be 0 (every row) or a number of rows, not {requested}")
    return rows if requested == 0 else min(rows, requested)


def sampled_rows(rows: int, size: int, seed: int) -> np.ndarray:
    """The positions of the SIZE rows (of ROWS) a seeded sample takes, in table order: the same
    seed and size give the same rows, so a run records the rows it used as (seed, size)."""
    if size >= rows:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size, replace=False))


def load_sample(store: ContentStore, digest: Digest, size: int, seed: int) -> pd.DataFrame:
    """SIZE seeded rows of a stored dataset version, read a row group at a time (the whole table
    need not fit in memory), after the object is verified against its hash."""
    if not store.local:
        table = load_arrow(store, digest)
        return table.take(sampled_rows(table.num_rows, size, seed)).to_pandas()
    files = [pq.ParquetFile(store.path(part)) for part in _parts(store, digest)]
    chosen = sampled_rows(sum(f.metadata.num_rows for f in files), size, seed)
    parts, start = [], 0
    for parquet in files:
        for group in range(parquet.num_row_groups):
            count = parquet.metadata.row_group(group).num_rows
            lo, hi = np.searchsorted(chosen, [start, start + count])
            if hi > lo:
                parts.append(parquet.read_row_group(group).take(chosen[lo:hi] - start))
            start += count
    return pa.concat_tables(parts).to_pandas() if parts else files[0].schema_arrow.empty_table().to_pandas()
