"""What the pass learns about how a CSV file is written beyond the head that dialect.py sniffed.

How a CSV file is written (separator, encoding, gap markers such as '?', decimal commas, a missing
header row) is sniffed once from its head (dialect.py). What shows only later, a non-UTF-8 byte or a
'?' in a numeric column, changes the dialect and the pass starts again, as a widening does.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from provenflow.data import dialect
from provenflow.data.dialect import Dialect
from provenflow.errors import DataError


def first_block_markers(batch: pa.RecordBatch, how: Dialect, types: dict[str, pa.DataType]) -> Dialect:
    """HOW with the gap markers of the text columns of the first block that are numbers but for
    them ('?' past the sniffed head); later blocks show theirs as conversion errors."""
    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        if name in types or not pa.types.is_string(array.type):
            continue
        values = pc.unique(array.drop_null())
        numbers = pc.match_substring_regex(values, dialect.NUMBER[how.decimal_point])
        if not len(values) or not pc.any(numbers).as_py():
            continue
        markers = dialect.gap_markers(pc.filter(values, pc.invert(numbers)).to_pylist())
        for marker in sorted(markers or ()):
            how = how.with_marker(marker, name)
    return how


class Reencode(Exception):
    """The source is not text in the dialect's encoding: the pass starts again in the next one."""


class Markers(Exception):
    """Gap markers were found in the first block: the pass starts again with this dialect."""

    def __init__(self, how: Dialect) -> None:
        self.how = how


def next_encoding(shown: str, how: Dialect, exc: Exception) -> Dialect:
    """HOW in the next encoding to try (cp1252, then latin-1, which reads any byte)."""
    following = how.next_encoding()
    if following is None:
        raise DataError(
            f"{shown!r} is not text in UTF-8 or any other encoding ({exc}); is it really CSV?"
        ) from None
    return following
