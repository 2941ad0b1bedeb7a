"""What the profile needs of one part, kept so an unchanged part is not read again.

A folder's profile is exact counts and moments (``profiling.Column``, mergeable) plus quantiles and
validation from a seeded sample. Here each part keeps both: its columns' accumulators, and the rows
a sample of the table's size takes. A row's sample key comes from the part's hash and its
position in the part, not its position in the table, so a part's rows keep their keys when a
partition is added before it. The table's sample is then every part's rows whose key is below
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
VERSION = 2
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


def row_keys(digest: Digest, count: int) -> np.ndarray:
    """A pseudo-random key per row (splitmix64 of the part's hash and the row's position in it)."""
    seed = np.uint64(int(digest.hex[:16], 16))
    with np.errstate(over="ignore"):
        z = np.arange(count, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + seed
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

    def of(self, store: ContentStore, digest: Digest, below: np.uint64) -> Summary:
        """The part's summary holding its rows with keys up to BELOW (the table's sample threshold).
        The table grows, so a kept summary usually holds more; it is cut down when it holds more than
        twice what is needed, so the summaries together hold about 2 × SAMPLE_ROWS rows at most."""
        path = self.folder / f"{digest.hex}-{VERSION}.pickle" if self.folder else None
        summary = None
        if path is not None and path.exists():
            with contextlib.suppress(Exception), open(path, "rb") as fh:
                summary = pickle.load(fh)  # written by this code, under the project's own .provenflow
        if summary is not None and summary.below >= int(below):
            if summary.below <= 2 * int(below):
                return summary
            keep = pc.less_equal(summary.kept["__key"], pa.scalar(int(below), pa.uint64()))
            summary = Summary(
                summary.rows, summary.columns, int(below), summary.kept.filter(keep), summary.sums
            )
        else:
            summary = self._read(store, digest, below)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".summary-", dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(summary, fh, protocol=5)
            os.replace(tmp, path)
        return summary

    def _read(self, store: ContentStore, digest: Digest, below: np.uint64) -> Summary:
        source = store.path(digest) if store.local else store.fs.open(store.path(digest))
        parquet = pq.ParquetFile(source)
        rows = parquet.metadata.num_rows
        keys = row_keys(digest, rows)
        columns = {f.name: Column(f.type) for f in parquet.schema_arrow}
        kept, start = [], 0
        sums = [0] * len(PRIMES)
        for batch in parquet.iter_batches(batch_size=64 * 1024):
            hashes = pd.util.hash_pandas_object(batch.to_pandas(), index=False).to_numpy()
            for j, prime in enumerate(PRIMES):
                sums[j] = (sums[j] + _poly(hashes, prime) * pow(BASE, start, prime)) % prime
            for name, array in zip(batch.schema.names, batch.columns, strict=True):
                columns[name].add(array)
            chosen = np.flatnonzero(keys[start : start + batch.num_rows] <= below)
            if len(chosen):
                table = pa.Table.from_batches([batch]).take(chosen)
                table = table.append_column("__key", pa.array(keys[start + chosen]))
                kept.append(table.append_column("__row", pa.array(start + chosen, pa.int64())))
            start += batch.num_rows
        schema = parquet.schema_arrow.append(pa.field("__key", pa.uint64())).append(
            pa.field("__row", pa.int64())
        )
        return Summary(
            rows, columns, int(below), pa.concat_tables(kept) if kept else schema.empty_table(), tuple(sums)
        )


def _poly(hashes: np.ndarray, prime: int) -> int:
    """sum(h_i * BASE**i) mod PRIME, vectorised: every product of two residues fits in 62 bits."""
    residues = hashes % np.uint64(prime)
    powers = np.ones(1, dtype=np.uint64)
    while len(powers) < len(residues):  # BASE**0 .. BASE**(2k-1) from BASE**0 .. BASE**(k-1)
        step = np.uint64(pow(BASE, len(powers), prime))
        powers = np.concatenate([powers, powers * step % np.uint64(prime)])
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
