"""The profile of a table too large to hold: exact counts and moments streamed, the rest from a seeded sample.

Every batch goes through the sample (the rows with the smallest pseudo-random keys, so the same
rows whatever the batch sizes) and through one exact accumulator per column; a table of at most
``SAMPLE_ROWS`` rows is its own sample, profiled and validated exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from provenflow.data import datasets

# Rows kept in the bounded sample: the whole table below this, so small tables are profiled and
# validated exactly as before; above it, quantiles, histogram shapes and validation use the sample.
SAMPLE_ROWS = 100_000
SAMPLE_SEED = 0
# A categorical column is counted exactly up to this many distinct values; above, its distinct
# count is estimated from the sample and its top values come from the sample too (identifiers, free text).
EXACT_DISTINCT = 10_000


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


class Sample:
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


class Column:
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

    def add(self, array: pa.Array, encoded: pa.DictionaryArray | None = None) -> None:
        """Count ARRAY's values in; ENCODED, a text column's dictionary encoding when the caller
        has it (part_summaries hashes the rows through it), spares finding its distinct values again."""
        if self.numeric:
            values = array.drop_null().to_numpy(zero_copy_only=False).astype("float64", copy=False)
            nan = np.isnan(values)
            if nan.any():
                values = values[~nan]
            self.missing += len(array) - len(values)
            self._moments(values)
            # A continuous column shows itself in its first values: no full sort and count then.
            if self.counts is not None and len(np.unique(values[:1000])) > datasets.DISCRETE_VALUES:
                self.counts = None
            if self.counts is not None and len(values):
                self._count(*np.unique(values, return_counts=True), limit=datasets.DISCRETE_VALUES)
        else:
            self.missing += array.null_count
            self.count += len(array) - array.null_count
            if self.counts is not None and encoded is not None:
                # value_counts' answer, in its order (first appearance): the dictionary's
                counts = np.bincount(
                    encoded.indices.drop_null().to_numpy(), minlength=len(encoded.dictionary)
                )
                if len(encoded.dictionary) > EXACT_DISTINCT:
                    self.counts = None
                else:
                    self._count(encoded.dictionary.to_pylist(), counts, limit=EXACT_DISTINCT)
            elif self.counts is not None:
                counted = pc.value_counts(array.drop_null())
                if len(counted) > EXACT_DISTINCT:  # an identifier: too many to count, no Python list of them
                    self.counts = None
                else:
                    self._count(
                        counted.field(0).to_pylist(), counted.field(1).to_numpy(), limit=EXACT_DISTINCT
                    )

    @classmethod
    def merged(cls, parts: list[Column]) -> Column:
        """One column's statistics over the rows of all PARTS: what merging them one by one gives.
        A text column's value counts are summed in one go: merged one part at a time, a folder of
        a hundred parts with a few thousand distinct values each spent ~0.3 s in dict updates."""
        total = cls(pa.null())
        total.numeric, total.integer = parts[0].numeric, parts[0].integer
        batched = not total.numeric and all(p.counts is not None for p in parts)
        for part in parts:
            total.merge(part, counts=not batched)
        if batched:
            keys = np.empty(sum(len(p.counts) for p in parts), dtype=object)
            keys[:] = [k for p in parts for k in p.counts]
            codes, distinct = pd.factorize(keys, sort=False)  # in order of first appearance, as a dict
            counts = np.zeros(len(distinct), dtype="int64")
            np.add.at(
                counts, codes, np.fromiter((c for p in parts for c in p.counts.values()), "int64", len(keys))
            )
            if len(distinct) > EXACT_DISTINCT:
                total.counts = None
            else:
                total.counts = dict(zip(distinct.tolist(), counts.tolist(), strict=True))
        return total

    def merge(self, other: Column, counts: bool = True) -> None:
        """Add the statistics of OTHER (the same column over other rows), as if its rows had been
        added (its value counts too unless COUNTS is off: ``merged`` sums them itself)."""
        self.missing += other.missing
        self.infinite += other.infinite
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        if self.numeric and other.count:
            total = self.count + other.count
            with np.errstate(invalid="ignore", over="ignore"):
                delta = other.mean - self.mean
                self.m2 += other.m2 + delta * delta * self.count * other.count / total
                self.mean += delta * other.count / total
            self.count = total
        elif not self.numeric:
            self.count += other.count
        if not counts:
            return
        if self.counts is None or other.counts is None:
            self.counts = None
        else:
            limit = datasets.DISCRETE_VALUES if self.numeric else EXACT_DISTINCT
            self._count(list(other.counts), list(other.counts.values()), limit=limit)

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


def finish_profile(sample_profile: dict, columns: dict[str, Column], rows: int, sample_rows: int) -> dict:
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
