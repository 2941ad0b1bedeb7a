"""Type widening: a CSV column's type is the one that fits every value, not only the first block's.

Streaming CSV readers infer types from the first block. A later value the inferred type cannot
hold (``1.5`` in an int64 column) widens that column to the join of both types and the pass starts
again; the result is the type that fits every value, the same as if the whole file were one block.
Dates stay strings, as pandas' ``read_csv`` leaves them (feature handling decides what they are).
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.csv as pa_csv

CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to ([^:]+): invalid value '(.*)'", re.S)


class Widen(Exception):
    """A column's type must change; the pass starts again with these types."""

    def __init__(self, types: dict[str, pa.DataType]) -> None:
        self.types = types


def type_of_value(value: str) -> pa.DataType:
    table = pa_csv.read_csv(pa.py_buffer(b"v\n" + value.encode() + b"\n"))
    return table.schema[0].type


def join_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
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
