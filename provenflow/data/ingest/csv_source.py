"""CSV sources as Arrow record batches, read with pyarrow's streaming CSV reader in a given dialect.

The dialect (separator, encoding, gap markers, decimal commas, header) comes from sniffing; this
module turns it into pyarrow's options, and stops the pass (an exception the pass catches) when
the first block shows the dialect or the column types must change.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv

from provenflow.data import datasets
from provenflow.data.credentials import Credentials
from provenflow.data.dialect import FALSE_VALUES, TRUE_VALUES, Dialect
from provenflow.data.ingest.names import check_names
from provenflow.data.ingest.sniffing import Markers, Reencode, first_block_markers
from provenflow.data.ingest.widening import Widen


def _csv_options(
    how: Dialect, block_bytes: int, types: dict[str, pa.DataType]
) -> tuple[pa_csv.ReadOptions, pa_csv.ParseOptions, pa_csv.ConvertOptions]:
    """pyarrow's options for dialect HOW; a plain file gets exactly the options it always had."""
    read = {"block_size": block_bytes}
    if how.encoding != "utf-8":
        read["encoding"] = how.encoding  # transcoded to UTF-8 as it is read
    if how.names is not None:
        read.update(column_names=list(how.names), skip_rows=1 if how.header else 0)
    convert = {
        "strings_can_be_null": True,
        "column_types": types,
        "true_values": list(TRUE_VALUES),
        "false_values": list(FALSE_VALUES),
    }
    if how.markers:
        convert["null_values"] = how.null_values
    if how.decimal_point != ".":
        convert["decimal_point"] = how.decimal_point
    return (
        pa_csv.ReadOptions(**read),
        pa_csv.ParseOptions(delimiter=how.delimiter),
        pa_csv.ConvertOptions(**convert),
    )


@contextlib.contextmanager
def open_csv(
    source: str,
    how: Dialect,
    credentials: Credentials | None,
    block_bytes: int,
    types: dict[str, pa.DataType],
) -> Iterator[pa_csv.CSVStreamingReader]:
    fs, path = datasets._open_source(source, credentials)
    read, parse, convert = _csv_options(how, block_bytes, types)
    with fs.open(path, "rb", compression="infer") as fh:
        stream = _SkipInitialSpace(fh, how.delimiter) if how.initial_space else fh
        yield pa_csv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)


class _SkipInitialSpace(io.RawIOBase):
    """A CSV byte stream without the spaces after each separator outside quotes: pandas'
    ``skipinitialspace``, which pyarrow's parser lacks ('39, State-gov, "a, b"' → '39,State-gov,"a, b"').

    Works on the bytes before any transcoding: the separator, space and quote are single ASCII
    bytes in UTF-8, cp1252 and latin-1 alike. A chunk is split at its quotes, and only the parts
    outside quotes are rewritten."""

    def __init__(self, raw, delimiter: str) -> None:
        self.raw = raw
        self.delimiter = delimiter.encode()
        self.spaced = self.delimiter + b" "
        self.quoted = False
        self.after_delimiter = False  # the last chunk ended with a separator: drop the next spaces

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while True:
            chunk = self.raw.read(size)
            if not chunk:
                return b""
            out = self._filter(chunk)
            if out:  # (empty only when the chunk was all spaces to drop; b"" would mean the end)
                return out

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _filter(self, chunk: bytes) -> bytes:
        parts = chunk.split(b'"')
        for i, part in enumerate(parts):
            if i:
                self.quoted = not self.quoted
            if self.quoted:
                self.after_delimiter = False
                continue
            if self.after_delimiter:
                part = part.lstrip(b" ")
            while self.spaced in part:  # bytes.replace: 7x faster than re.sub here, one pass per space
                part = part.replace(self.spaced, self.delimiter)
            if part or i < len(parts) - 1:
                self.after_delimiter = part.endswith(self.delimiter) and i == len(parts) - 1
            parts[i] = part
        return b'"'.join(parts)


def csv_batches(
    source: str,
    how: Dialect,
    credentials: Credentials | None,
    block_bytes: int,
    types: dict[str, pa.DataType],
) -> Iterator[pa.RecordBatch]:
    types = {**types, **_dates_in_head(source, how, credentials, types)}
    with open_csv(source, how, credentials, block_bytes, types) as reader:
        names = reader.schema.names
        check_names(source, names)
        temporal = {
            f.name: pa.string()
            for f in reader.schema
            if f.name not in types and (pa.types.is_temporal(f.type))
        }
        if temporal:  # pandas never parsed dates; keep them text (restart: only one block was read)
            raise Widen(temporal)
        if any(pa.types.is_binary(f.type) for f in reader.schema):
            raise Reencode  # pyarrow keeps bytes that are not UTF-8 as binary in the first block
        batches = iter(reader)
        first = next(batches, None)
        if first is None:
            return
        marked = first_block_markers(first, how, types)
        if marked != how:  # restart: only one block was read
            raise Markers(marked)
        yield first
        yield from batches


# The head the date columns are found in before the first block is parsed (pyarrow's first block
# is BLOCK_BYTES, 8 MiB: parsing it twice was the cost of every CSV file with a date column).
HEAD_BYTES = 64 * 1024


def _dates_in_head(
    source: str, how: Dialect, credentials: Credentials | None, types: dict[str, pa.DataType]
) -> dict[str, pa.DataType]:
    """The columns whose head pyarrow reads as dates or times, as text: what the pass would start
    again with (``Widen``) once the first block showed them. The same types as that restart: a
    column that is temporal in the head is temporal or text in the whole first block (pyarrow's
    inference only moves on from dates to times, timestamps and text), and either way ends as text.
    Only a hint: a head it cannot read leaves the first block to tell."""
    try:
        with open_csv(source, how, credentials, HEAD_BYTES, types) as reader:
            return {
                f.name: pa.string()
                for f in reader.schema
                if f.name not in types and pa.types.is_temporal(f.type)
            }
    except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        return {}


def header_names(source: str, how: Dialect, credentials: Credentials | None) -> list[str]:
    if how.names is not None:
        return list(how.names)
    with open_csv(source, how, credentials, 64 * 1024, {}) as reader:
        return reader.schema.names
