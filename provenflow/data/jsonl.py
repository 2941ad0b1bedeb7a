"""JSON sources as Arrow record batches: JSON Lines (.jsonl, .ndjson) streamed, and a .json file
holding an array of records (vega_datasets' iris.json) read whole up to JSON_LIMIT bytes.

pyarrow's streaming JSON reader fixes its columns on the first block and fails on a field that
appears later. So the records are cut into blocks at line ends and read in two passes: the first
learns every field and the type that holds all its values, the second reads each block with that
schema. Memory stays at a block; the same file gives the same table whatever the block size. As in
a CSV file, dates stay text. A .json array is turned into JSON Lines and read the same way, so both
forms of the same records give the same table.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.json as pa_json

from provenflow.errors import DataError

_CHANGED = re.compile(r"Column\(/([^)]*)\) changed from (\w+) to (\w+)")
# A .json array is parsed whole: larger ones are refused (JSON Lines are streamed instead).
JSON_LIMIT = 512 * 1024 * 1024


def batches(fs, path: str, fmt: str, shown: str, block_bytes: int) -> Iterator[pa.RecordBatch]:
    """The records of the JSON (FMT "json") or JSON Lines ("jsonl") file at PATH, as batches."""
    if fmt == "json":
        data = _records_as_lines(fs, path, shown)
        opener = lambda: io.BytesIO(data)  # noqa: E731
    else:
        opener = lambda: fs.open(path, "rb", compression="infer")  # noqa: E731
    fields: dict[str, pa.DataType] = {}
    with opener() as fh:
        for block in _blocks(fh, block_bytes):
            for field in _read(block, shown).schema:
                fields[field.name] = _join(shown, field.name, fields.get(field.name), field.type)
    if not fields:
        raise DataError(f"{shown!r} has no records; expected one JSON object per record")
    schema = pa.schema(fields)
    options = pa_json.ParseOptions(explicit_schema=schema)
    with opener() as fh:
        for block in _blocks(fh, block_bytes):
            yield from pa_json.read_json(io.BytesIO(block), parse_options=options).to_batches()


def _read(block: bytes, shown: str) -> pa.Table:
    try:
        return pa_json.read_json(io.BytesIO(block))
    except pa.ArrowInvalid as exc:
        changed = _CHANGED.search(str(exc))
        if not changed:
            raise
        name, before, after = changed.groups()
        raise DataError(
            f"{shown!r}: field {name!r} holds {before} values in some records and {after} in others; "
            "give it one type (numbers, text or true/false) in every record"
        ) from None


def _records_as_lines(fs, path: str, shown: str) -> bytes:
    with fs.open(path, "rb", compression="infer") as fh:
        data = fh.read(JSON_LIMIT + 1)
    if len(data) > JSON_LIMIT:
        raise DataError(
            f"{shown!r} is a JSON file over {JSON_LIMIT // 2**20} MiB, which is read whole; write it as "
            "JSON Lines (one record per line, .jsonl), which is read as a stream"
        )
    try:
        records = json.loads(data, object_pairs_hook=_unique_keys)
    except _RepeatedKey as exc:  # pyarrow refuses it in JSON Lines; the stdlib would keep the last
        raise DataError(
            f"{shown!r}: a record has the field {exc.args[0]!r} twice; give each field once per record"
        ) from None
    except RecursionError:
        raise DataError(
            f"{shown!r} nests arrays or objects too deep to read; expected an array of records: "
            '[{"column": value, ...}, ...]'
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{shown!r} is not valid JSON: {exc}") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(
            f"{shown!r} holds {type(records).__name__ if not isinstance(records, list) else 'a list of other values'}"
            '; expected an array of records: [{"column": value, ...}, ...]'
        )
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


class _RepeatedKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        raise _RepeatedKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return record


def _blocks(fh, block_bytes: int) -> Iterator[bytes]:
    """The file in blocks of about BLOCK_BYTES, each ending at a line end."""
    while True:
        block = fh.read(block_bytes)
        if not block:
            return
        if not block.endswith(b"\n"):
            block += fh.readline()
        if block.strip():
            yield block


def _join(shown: str, name: str, a: pa.DataType | None, b: pa.DataType) -> pa.DataType:
    """The type holding a field's values from two blocks: numbers widen to float64, dates stay text;
    nested values and a field of numbers in some records and text in others are refused."""
    if pa.types.is_temporal(b):
        b = pa.string()
    if pa.types.is_nested(b) or (a is not None and pa.types.is_nested(a)):
        raise DataError(
            f"{shown!r}: field {name!r} holds objects or lists; a table needs flat records "
            "(one value per field), so flatten them first"
        )
    if a is None or a == b or pa.types.is_null(b):
        return b if a is None else a
    if pa.types.is_null(a):
        return b
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(t(a) for t in numeric) and any(t(b) for t in numeric):
        return pa.float64()
    raise DataError(
        f"{shown!r}: field {name!r} holds {a} values in some records and {b} in others; "
        "give it one type (numbers, text or true/false) in every record"
    )
