"""What the profile needs of one part, kept so an unchanged part is not read again.

A folder's profile is exact counts and moments (``profiling.Column``, mergeable) plus quantiles and
validation from a seeded sample. Here each part keeps both: its columns' accumulators, and the rows
a sample of the table's size takes. A row's sample key comes from the row's content hash and its
position in the part, not its position in the table, so a part's rows keep their keys when a
partition is added before it; and it is known while the file is read, so the pass that writes a
new part summarises it too (``Summarizer``), and the part is not read back. The table's sample is then every part's rows whose key is below
``SAMPLE_ROWS / rows`` of the key range: about SAMPLE_ROWS rows (binomially), the whole table
when it has at most SAMPLE_ROWS rows (then profiled exactly), and taken from the parts' kept rows
without reading the parts. Summaries are derived from the parts (named by their hash), so they are
a cache under ``.provenflow/part-summaries``: a missing one is rebuilt from its part.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from provenflow.data.ingest.profiling import Column
from provenflow.digest import Digest
from provenflow.storage.store import ContentStore

_KEY_RANGE = float(2**64)
VERSION = 3  # 3: row keys from the rows' hashes, not the part's hash (known during the pass)
# The table's fingerprint: a polynomial hash of its rows' hashes, sum(h_i * BASE**i) modulo four
# primes below 2**31 (~124 bits). It depends on the rows and their order only, and the parts'
# sums combine (shifted by BASE**offset), so the same table cut into other files has the same one.
PRIMES = (2147483647, 2147483629, 2147483587, 2147483579)
BASE = 1_000_003


@dataclass
class Summary:
    rows: int
    columns: dict[str, Column]
    below: int  # every row of the part with a key up to this is kept
    kept: pa.Table  # those rows, with "__key" and "__row" (the position in the part)
    sums: tuple[int, ...] = ()  # the part's rows' polynomial hash, one per prime (PRIMES)


def row_keys(hashes: np.ndarray, start: int) -> np.ndarray:
    """A pseudo-random key per row: splitmix64 of the row's content hash and its position in the part."""
    with np.errstate(over="ignore"):
        z = hashes + (np.arange(start, start + len(hashes), dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def threshold(rows: int, sample_rows: int) -> np.uint64:
    """The key below which a row is in the sample of a table of ROWS rows."""
    if rows <= sample_rows:
        return np.uint64(2**64 - 1)
    return np.uint64(int(_KEY_RANGE * sample_rows / rows))


class Summaries:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.fresh: dict[str, Summary] = {}  # made in this process by the pass that wrote the part
        self.loading: Future | None = None  # load_ahead's: the kept summaries of known parts
        self.loaded: dict[str, Summary] = {}

    def load_ahead(self, digests: list[Digest]) -> None:
        """Load the kept summaries of DIGESTS in a thread (the parts the stat cache knows: a folder of
        a hundred partitions took ~0.1 s) while the new files are read; ``of`` takes them from there."""
        if self.folder is None or not digests:
            return
        pool = ThreadPoolExecutor(1, thread_name_prefix="provenflow-summaries")
        self.loading = pool.submit(lambda: {d.hex: s for d in digests if (s := self._load(d)) is not None})
        pool.shutdown(wait=False)

    def _load(self, digest: Digest) -> Summary | None:
        path = self.folder / f"{digest.hex}-{VERSION}.pickle" if self.folder else None
        if path is None or not path.exists():
            return None
        with contextlib.suppress(Exception), open(path, "rb") as fh:
            return pickle.load(fh)  # written by this code, under the project's own .provenflow
        return None

    def of(self, store: ContentStore, digest: Digest, below: np.uint64) -> Summary:
        """The part's summary holding its rows with keys up to BELOW (the table's sample threshold).
        The table grows, so a kept summary usually holds more; it is cut down when it holds more than
        twice what is needed, so the summaries together hold about 2 × SAMPLE_ROWS rows at most."""
        if self.loading is not None:
            self.loaded, self.loading = self.loading.result(), None
        summary = self.fresh.get(digest.hex) or self.loaded.pop(digest.hex, None) or self._load(digest)
        if summary is not None and summary.below >= int(below):
            if summary.below <= 2 * int(below):
                return summary
            summary = fitted(summary, below)
        else:
            summary = self._read(store, digest, below)
        self.put(digest, summary)
        return summary

    def put(self, digest: Digest, summary: Summary) -> None:
        """Keep SUMMARY of the part DIGEST (written whole through a rename)."""
        self.fresh[digest.hex] = summary
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".summary-", dir=self.folder)
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(summary, fh, protocol=5)
        os.replace(tmp, self.folder / f"{digest.hex}-{VERSION}.pickle")

    def _read(self, store: ContentStore, digest: Digest, below: np.uint64) -> Summary:
        """Rebuilt from the stored part (a summary lost, or kept with too few rows)."""
        source = store.path(digest) if store.local else store.fs.open(store.path(digest))
        parquet = pq.ParquetFile(source)
        summarizer = Summarizer(parquet.schema_arrow, fixed=below)
        for batch in parquet.iter_batches(batch_size=64 * 1024):
            summarizer.add(batch)
        return summarizer.finish()


def fitted(summary: Summary, below: np.uint64, room: int = 2) -> Summary:
    """SUMMARY cut down to the rows with keys up to BELOW when it holds more than ROOM times those."""
    if summary.below <= room * int(below):
        return summary
    kept = summary.kept.filter(up_to(summary.kept["__key"], below))
    return Summary(summary.rows, summary.columns, int(below), kept, summary.sums)


class Summarizer:
    """A part's summary built from its batches as they go by, in order: the one pass over a new file
    (``one_pass``) feeds it, so the part is not read back. The rows kept are those with a key up to
    the sample threshold of a table of at least OTHERS rows besides this part's, lowered as the
    part's rows are counted (a table is never smaller than the rows seen), so memory stays about
    SAMPLE_ROWS rows; FIXED keeps a given threshold instead."""

    def __init__(
        self, schema: pa.Schema, others: int = 0, sample_rows: int = 0, fixed: np.uint64 | None = None
    ) -> None:
        self.schema = schema
        self.others, self.sample_rows, self.fixed = others, sample_rows, fixed
        self.columns = {f.name: Column(f.type) for f in schema}
        self.sums = [0] * len(PRIMES)
        self.rows = 0
        self.kept: list[pa.Table] = []
        self.below = int(fixed) if fixed is not None else 2**64 - 1

    def add(self, batch: pa.RecordBatch) -> None:
        start = self.rows
        encoded: dict[int, pa.DictionaryArray] = {}
        hashes = row_hashes(batch, encoded)
        for j, prime in enumerate(PRIMES):
            self.sums[j] = (self.sums[j] + _poly(hashes, prime) * pow(BASE, start, prime)) % prime
        for i, (name, array) in enumerate(zip(batch.schema.names, batch.columns, strict=True)):
            self.columns[name].add(array, encoded.get(i))
        self.rows += batch.num_rows
        if self.fixed is None:
            below = int(threshold(self.others + self.rows, self.sample_rows))
            if below < self.below // 2:  # cut what is kept now and then, not at every batch
                self.below = below
                self.kept = [t.filter(up_to(t["__key"], below)) for t in self.kept]
        keys = row_keys(hashes, start)
        chosen = np.flatnonzero(keys <= np.uint64(self.below))
        if len(chosen):
            table = pa.Table.from_batches([batch]).take(chosen)
            table = table.append_column("__key", pa.array(keys[chosen]))
            self.kept.append(table.append_column("__row", pa.array(start + chosen, pa.int64())))

    def finish(self) -> Summary:
        below = self.below
        if self.fixed is None:
            below = int(threshold(self.others + self.rows, self.sample_rows))
        if self.kept:
            kept = pa.concat_tables(self.kept)
            kept = kept.filter(up_to(kept["__key"], below))
        else:
            kept = self.schema.append(pa.field("__key", pa.uint64())).append(pa.field("__row", pa.int64()))
            kept = kept.empty_table()
        return Summary(self.rows, self.columns, below, kept.combine_chunks(), tuple(self.sums))


def up_to(keys, below: int):
    """Which sample KEYS are kept by a summary cut at BELOW."""
    return pc.less_equal(keys, pa.scalar(int(below), pa.uint64()))


def row_hashes(batch: pa.RecordBatch, encoded: dict[int, pa.DictionaryArray] | None = None) -> np.ndarray:
    """``pd.util.hash_pandas_object(batch.to_pandas(), index=False)``, the fingerprint's row hash,
    computed faster: pandas hashes a text column by factorising its values as Python objects (most
    of the pass's time on a table of strings); here Arrow finds the distinct values and pandas
    hashes only those. The same numbers (tests/test_many_files.py compares them). ENCODED gets the
    text columns' dictionary encodings (by position), which their exact counts reuse."""
    if not batch.num_columns:
        return np.array([], dtype=np.uint64)
    out = np.full(batch.num_rows, 0x345678, dtype=np.uint64)
    mult = np.uint64(1000003)
    with np.errstate(over="ignore"):
        for i, array in enumerate(batch.columns):  # pandas' combine_hash_arrays
            out ^= _column_hashes(array, i, encoded)
            out *= mult
            inverse = batch.num_columns - i
            mult += np.uint64(82520 + inverse + inverse)
        out += np.uint64(97531)
    return out


def _column_hashes(array: pa.Array, index: int = 0, encodings: dict | None = None) -> np.ndarray:
    if _plain_numbers(array):  # the numpy array pandas would hash, without a Series around it
        return pd.util.hash_array(array.to_numpy(zero_copy_only=False), categorize=False)
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return pd.util.hash_pandas_object(array.to_pandas(), index=False).to_numpy()
    if not array.null_count and len(array) >= 1000 and pc.count_distinct(array[:1000]).as_py() > 900:
        # Nearly all distinct (an identifier): finding the distinct values first would save nothing.
        return pd.util.hash_array(array.to_numpy(zero_copy_only=False).astype(object), categorize=False)
    encoded = pc.dictionary_encode(array)
    if encodings is not None:
        encodings[index] = encoded
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    hashed = pd.util.hash_array(distinct.astype(object), categorize=False)
    if not len(hashed):
        return np.full(len(array), np.iinfo(np.uint64).max, dtype=np.uint64)
    result = hashed.take(encoded.indices.fill_null(0).to_numpy(zero_copy_only=False))
    if encoded.indices.null_count:
        result[encoded.indices.is_null().to_numpy(zero_copy_only=False)] = np.iinfo(np.uint64).max
    return result


def _plain_numbers(array: pa.Array) -> bool:
    """Integers and floats (gaps become NaN, as in pandas) and booleans without gaps: their numpy
    form is the one ``to_pandas`` gives."""
    kind = array.type
    if pa.types.is_boolean(kind):
        return not array.null_count
    return kind in (pa.int64(), pa.float64()) or (pa.types.is_integer(kind) and not array.null_count)


# BASE**i modulo each prime, i = 0, 1, ...: the batches' lengths differ, the powers do not.
_POWERS: dict[int, np.ndarray] = {}


def _poly(hashes: np.ndarray, prime: int) -> int:
    """sum(h_i * BASE**i) mod PRIME, vectorised: every product of two residues fits in 62 bits."""
    residues = hashes % np.uint64(prime)
    powers = _POWERS.get(prime, np.ones(1, dtype=np.uint64))
    while len(powers) < len(residues):  # BASE**0 .. BASE**(2k-1) from BASE**0 .. BASE**(k-1)
        step = np.uint64(pow(BASE, len(powers), prime))
        powers = np.concatenate([powers, powers * step % np.uint64(prime)])
    _POWERS[prime] = powers
    products = residues * powers[: len(residues)] % np.uint64(prime)
    return int(products.sum(dtype=np.uint64)) % prime  # < 2**31 each: sums of 2**32 of them fit


def fingerprint(parts: list[tuple[int, tuple[int, ...]]], schema: list) -> str:
    """The table's fingerprint from its parts' (rows, sums) in order, and its schema."""
    totals, offset = [0] * len(PRIMES), 0
    for rows, sums in parts:
        for j, prime in enumerate(PRIMES):
            totals[j] = (totals[j] + sums[j] * pow(BASE, offset, prime)) % prime
        offset += rows
    return Digest.of_bytes(repr((schema, offset, totals)).encode()).hex
