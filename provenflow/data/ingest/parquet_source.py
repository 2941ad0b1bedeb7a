"""Parquet sources as record batches, with the columns a pandas reader would give (an index is data too)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from provenflow.data import datasets, parquet_types
from provenflow.data.credentials import Credentials
from provenflow.data.ingest.names import check_names

_INDEX = re.compile(r"__index_level_(\d+)__")


def parquet_batches(
    source: str,
    credentials: Credentials | None,
    batch_rows: int,
    converted: dict[str, str],
    types: dict[str, pa.DataType] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The file's rows as batches; CONVERTED gets what was done to a column of a type the models
    cannot use (``parquet_types.usable``). TYPES: a column's type joined with its folder's other files
    (an int64 column cast to double where another file has it as double)."""
    types = types or {}
    fs, path = datasets._open_source(source, credentials)
    with fs.open(path, "rb") as fh:
        parquet = pq.ParquetFile(fh)
        schema = parquet.schema_arrow
        check_names(source, schema.names)
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
                if name in types and array.type != types[name]:
                    array = array.cast(types[name])
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
