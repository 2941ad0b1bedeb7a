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

    def table(self, chunks: list[Chunk]) -> pa.Table:
        # Built in parts: a segment of 5,000 one-row requests is ~30 ms of GIL-holding numpy/arrow
        # calls, and the event loop, which needs the GIL for every request, must get it back between
        # them (single-row p99.9 at 500 req/s: see provenflow/serving/app.py).
        parts = [
            self._part(chunks[i : i + TABLE_PART_CHUNKS]) for i in range(0, len(chunks), TABLE_PART_CHUNKS)
        ]
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

    def _part(self, chunks: list[Chunk]) -> pa.Table:
        rows = np.array([c.rows for c in chunks])
        columns: dict[str, pa.Array] = {
            "request_id": pa.array(np.repeat([c.request_id for c in chunks], rows), pa.string()),
            "row": pa.array(np.concatenate([np.arange(n, dtype=np.int32) for n in rows])),
            "time": pa.array(np.repeat([c.time_us for c in chunks], rows), pa.timestamp("us", tz="UTC")),
            "model_version": pa.array(np.full(rows.sum(), self.version, dtype=np.int64)),
            "model_hash": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(rows.sum(), dtype=np.int32)), pa.array([self.model_hash])
            ),
        }
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
