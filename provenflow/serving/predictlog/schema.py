"""What one logged row holds, and how a segment's Parquet table is built from a request's rows.

One row per predicted row: ``request_id``, ``row`` (position in the request), ``time`` (UTC),
``model_version``, ``model_hash``, one column per input feature (numeric as float64, categorical as
string; a feature whose name collides with these is stored as ``input.<name>``), ``prediction``, and
for classifiers with probabilities one ``proba_<class>`` column per class. The Parquet schema
metadata (key ``provenflow``) maps columns back to feature names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from provenflow.serving.inputs import Feature

RESERVED = frozenset({"request_id", "row", "time", "model_version", "model_hash", "prediction"})


# Requests per part when a segment's table is built (see Schema.table).
TABLE_PART_CHUNKS = 500
_TYPES = {"str": str, "bool": bool, "int": int, "float": float}


@dataclass(frozen=True)
class Chunk:
    request_id: str
    time_us: int
    rows: int
    columns: dict[str, np.ndarray]
    labels: np.ndarray
    probabilities: np.ndarray | None
    arrow: dict[str, Any] | None = None  # Batch.arrow: columns already in Arrow
    arrow_labels: Any = None  # Predictions.arrow_labels, when already made


@dataclass(frozen=True)
class ArrowRows:
    """A request's rows as a write-ahead file's Arrow frames hold them: columns ``c.<feature>``,
    ``y`` (the prediction) and ``p<i>`` (class probabilities), taken into a segment as they are."""

    request_id: str
    time_us: int
    rows: int
    table: pa.Table


def feature_columns(features: tuple[Feature, ...]) -> dict[str, str]:
    """Feature name → column name in the log."""
    return {
        f.name: f"input.{f.name}" if f.name in RESERVED or f.name.startswith("proba_") else f.name
        for f in features
    }


@dataclass(frozen=True)
class Schema:
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
    def from_header(cls, payload: bytes) -> Schema:
        head = orjson.loads(payload)
        features = tuple(Feature(n, k, tuple(_TYPES[t] for t in types)) for n, k, types in head["features"])
        return cls(head["model"], int(head["version"]), head["hash"], features, head["classes"])

    def table(self, chunks: list[Chunk | ArrowRows]) -> pa.Table:
        # Built in parts: a segment of 5,000 one-row requests is ~30 ms of numpy/arrow calls, done
        # in parts so that a thread waiting for the GIL gets it between them (the server builds
        # segments in a child process: builder.py). Requests already in Arrow are taken as they are.
        parts, run = [], []
        for chunk in chunks:
            if isinstance(chunk, ArrowRows):
                if run:
                    parts.append(self._part(run))
                    run = []
                parts.append(self._arrow_part(chunk))
                continue
            run.append(chunk)
            if len(run) == TABLE_PART_CHUNKS:
                parts.append(self._part(run))
                run = []
        if run:
            parts.append(self._part(run))
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

    def _head(self, request_ids: list[str], times: list[int], rows: np.ndarray) -> dict[str, pa.Array]:
        total = int(rows.sum())
        request = np.repeat(np.arange(len(rows), dtype=np.int32), rows)  # each row's request
        starts = np.cumsum(rows) - rows
        return {
            # Each id once, then decoded in Arrow: a numpy array of 10,000 copies took ~7 ms.
            "request_id": pa.DictionaryArray.from_arrays(
                pa.array(request), pa.array(request_ids, pa.string())
            ).dictionary_decode(),
            "row": pa.array((np.arange(total) - starts[request]).astype(np.int32)),
            "time": pa.array(np.repeat(np.asarray(times, dtype=np.int64), rows), pa.timestamp("us", tz="UTC")),
            "model_version": pa.array(np.full(total, self.version, dtype=np.int64)),
            "model_hash": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(total, dtype=np.int32)), pa.array([self.model_hash])
            ),
        }

    def _arrow_part(self, chunk: ArrowRows) -> pa.Table:
        table = chunk.table
        columns = self._head([chunk.request_id], [chunk.time_us], np.array([chunk.rows]))
        for feature in self.features:
            column = table.column(f"c.{feature.name}")
            if feature.kind == "numeric":
                column = column.cast(pa.float64())
            elif feature.category_types == (str,) and not pa.types.is_string(column.type):
                column = column.cast(pa.string())  # all missing: a null column
            columns[self.columns[feature.name]] = column
        columns["prediction"] = table.column("y")
        if self.classes is not None and "p0" in table.column_names:
            for i, cls in enumerate(self.classes):
                columns[f"proba_{cls}"] = table.column(f"p{i}")
        return pa.table(columns)

    def _part(self, chunks: list[Chunk]) -> pa.Table:
        rows = np.array([c.rows for c in chunks])
        columns = self._head([c.request_id for c in chunks], [c.time_us for c in chunks], rows)
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
