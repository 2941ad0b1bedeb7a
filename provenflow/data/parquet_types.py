"""Column types a Parquet file can hold that the profile and the models cannot use as they are.

A data-run reads each as the nearest type they can use and says so (a notice per column); the
canonical copy holds the result, so every later step sees one table:

- decimal → float64: a price is a number, not hundreds of distinct labels left out as an identifier;
- date → timestamp: a date feature, not an identifier;
- duration → float seconds, time of day → float seconds since midnight;
- list, struct, map → compact JSON text, which can be profiled, and is then left out as free text or
  used as a category (it crashed the profile before).
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.compute as pc

_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def usable(array: pa.Array) -> tuple[pa.Array, str | None]:
    """ARRAY as a type the profile and the models take, and what was done (None: nothing)."""
    kind = array.type
    if pa.types.is_decimal(kind):
        return array.cast(pa.float64()), f"{kind} read as float64"
    if pa.types.is_date(kind):
        return array.cast(pa.timestamp("s")), f"{kind} read as a timestamp"
    if pa.types.is_duration(kind):
        return _seconds(array), f"{kind} read as seconds (float64)"
    if pa.types.is_time(kind):
        return _seconds(array), f"{kind} (time of day) read as seconds since midnight (float64)"
    if pa.types.is_nested(kind):
        text = [
            None
            if value is None
            else orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
            for value in array.to_pylist()
        ]
        return pa.array(text, pa.string()), f"{kind} read as JSON text"
    return array, None


def _seconds(array: pa.Array) -> pa.Array:
    return pc.divide(array.cast(pa.int64()).cast(pa.float64()), float(_PER_SECOND[array.type.unit]))
