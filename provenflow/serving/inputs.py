"""Turning a /predict request body into checked, typed columns, or into a list of problems.

The body is parsed with orjson and checked column by column in plain Python: a pydantic model
per row halved throughput in measurements here, and a column of plain values converts to one
numpy array in one call. Every problem names the field (and row) at fault and what was expected,
so a client can fix its request from the 422 body alone.

Accepted bodies (all three give the same batch)::

    {"records": [{"bill_length_mm": 39.1, "island": "Dream"}, ...]}
    {"columns": {"bill_length_mm": [39.1, ...], "island": ["Dream", ...]}}
    [{"bill_length_mm": 39.1, "island": "Dream"}, ...]

``null`` is a missing value, imputed the way training imputed it. JSON has no NaN or Infinity,
and orjson refuses them (and numbers that overflow a double), so every number that arrives is finite.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd

from provenflow.errors import did_you_mean

Kind = Literal["numeric", "categorical", "datetime"]
# At most this many problems are listed in a 422 body; the total count is always given.
MAX_PROBLEMS = 20
_NUMERIC_TYPES = frozenset({int, float, type(None)})
_DATE_TYPES = frozenset({str, type(None)})
_JSON_NAMES = {str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null",
               list: "a list", dict: "an object"}  # fmt: skip


@dataclass(frozen=True)
class Feature:
    """One model input column, as recorded in the model version's signature."""

    name: str
    kind: Kind
    # Python types a categorical value may have (str unless training saw e.g. booleans).
    category_types: tuple[type, ...] = (str,)
    # A datetime feature's strftime format, as training read it (None: any date pandas parses).
    date_format: str | None = None
    # What a team's model was given for a date column (log_model): "date" or "datetime" objects, or
    # "datetime64"; the date strings of a request are turned into those. None: the strings as sent
    # (a model run's pipeline parses them itself).
    date_values: str | None = None

    @property
    def expected(self) -> str:
        if self.kind == "numeric":
            return "a number or null (numeric feature)"
        if self.kind == "datetime":
            if self.date_format == "ISO8601":
                return "an ISO 8601 date string (2026-03-04) or null (datetime feature)"
            written = f" written {self.date_format} or ISO 8601" if self.date_format else ""
            return f"a date string{written} or null (datetime feature)"
        names = sorted({_JSON_NAMES.get(t, t.__name__) for t in self.category_types})
        return f"{' or '.join(names)} or null (categorical feature)"


@dataclass(frozen=True)
class Problem:
    message: str
    field: str | None = None
    row: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "row": self.row, "message": self.message}


@dataclass
class RequestError(Exception):
    """A request the model cannot answer; ``status`` is the HTTP status to reply with."""

    problems: list[Problem]
    status: int = 422
    total: int = field(default=0)

    def __post_init__(self) -> None:
        self.total = self.total or len(self.problems)
        self.problems = self.problems[:MAX_PROBLEMS]
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        first = self.problems[0].message if self.problems else "invalid request"
        more = f" (and {self.total - 1} more problem{'s' if self.total > 2 else ''})" if self.total > 1 else ""
        return first + more

    def body(self) -> dict[str, Any]:
        return {"error": self.summary, "problems": [p.as_dict() for p in self.problems], "count": self.total}


@dataclass(frozen=True)
class Batch:
    """Checked input columns in the form training used: numeric as float64 with NaN for missing,
    categorical as object arrays with NaN for missing. ``arrow``: the same values of some columns
    as the Arrow arrays they came in (an Arrow body's string columns), for the prediction log to
    write as they are."""

    columns: dict[str, np.ndarray]
    rows: int
    arrow: dict[str, Any] | None = None


def parse_request(
    body: bytes | bytearray,
    features: tuple[Feature, ...],
    max_rows: int,
    ignored: frozenset[str] = frozenset(),
) -> Batch:
    """The request body as a checked batch; raises RequestError naming every bad field and row.
    ``ignored``: columns a row may carry that the model does not take (``LoadedModel.ignored``).

    A records body over ``SLICE_BYTES`` is parsed slice by slice (see ``record_slices``), so the
    GIL is never held for long and only one slice's Python objects exist at a time."""
    if not body or body.isspace():  # isspace, not strip(): no copy of a 60 MB body
        raise RequestError(
            [Problem('the request body is empty; expected {"records": [...]} or {"columns": {...}}')]
        )
    if len(body) > SLICE_BYTES:
        strings = string_quotes(body)
        _refuse_too_many_values(body, strings, len(features) + len(ignored), max_rows)
        slices = record_slices(body, strings) if strings is not None else None
        if slices is not None:
            return _parse_slices(slices, features, max_rows, ignored)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError([Problem(f"the request body is not valid JSON: {exc}")]) from None
    raw, rows = _raw_columns(payload, features, ignored)
    _check_rows(rows, max_rows)
    return _checked(raw, rows, features)


def _check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise RequestError([Problem("the request has no rows; send at least one record")])
    if rows > max_rows:
        raise RequestError(
            [Problem(f"the request has {rows} rows, more than this server's limit of {max_rows}; split it")],
            status=413,
        )


def _parse_slices(
    slices: Iterator[tuple[int, bytes]], features: tuple[Feature, ...], max_rows: int, ignored: frozenset[str]
) -> Batch:
    parts: list[dict[str, np.ndarray]] = []
    problems: list[Problem] = []
    # One object per distinct category value across slices: 100,000 rows of "Dream" cost one
    # string, not 100,000 (16 of the 24 MB a 100,000-row batch took).
    seen: dict[Any, Any] = {}
    total_problems = rows = 0
    for start, piece in slices:
        try:
            records = orjson.loads(piece)
        except orjson.JSONDecodeError as exc:
            raise RequestError(
                [Problem(f"the request body is not valid JSON: {exc} (in the records from byte {start})")]
            ) from None
        if rows + len(records) > max_rows:
            _check_rows(max_rows + 1, max_rows)  # refuse now: the rest is never parsed
        try:
            raw, n = _from_records(records, features, "records", offset=rows, ignored=ignored)
            columns = _checked(raw, n, features, offset=rows).columns
            for name, column in columns.items():
                if column.dtype == object:
                    columns[name] = np.fromiter(map(seen.setdefault, column, column), object, len(column))
            parts.append(columns)
        except RequestError as exc:  # keep going: the 422 lists problems from every slice
            problems += exc.problems[: MAX_PROBLEMS - len(problems)]
            total_problems += exc.total
        rows += len(records)
        del records
    if problems:
        raise RequestError(problems, total=total_problems)
    _check_rows(rows, max_rows)
    columns = {f.name: np.concatenate([part[f.name] for part in parts]) for f in features}
    return Batch(columns, rows)


# Records bodies above this size are parsed in slices of about this size: orjson parses 1 MB of
# records in ~5 ms here, so the event loop (which needs the GIL) waits at most that long, where one
# orjson.loads of a 60 MB body held the GIL for ~300 ms and made 3x its size in Python objects.
SLICE_BYTES = 1024 * 1024
_BLOCK = 1024 * 1024  # scan in blocks: the temporary masks stay small
_RECORDS_HEAD = re.compile(rb'\s*(\{\s*"records"\s*:\s*)?\[')
_CLOSE = {True: re.compile(rb"\]\s*\}\s*\Z"), False: re.compile(rb"\]\s*\Z")}


def string_quotes(body: bytes | bytearray) -> np.ndarray | None:
    """Positions of the quotes that open and close JSON strings (not those escaped by a
    backslash), found with numpy; None when there are too many escaped quotes to sort out."""
    data = np.frombuffer(body, dtype=np.uint8)
    quotes, escaped = [], []
    for block in range(0, len(data), _BLOCK):
        found = np.flatnonzero(data[block : block + _BLOCK] == ord('"')) + block
        quotes.append(found.astype(np.int32))  # bodies are far below 2 GiB
        escaped.append(found[data[np.maximum(found - 1, 0)] == ord("\\")])
    q, escaped = np.concatenate(quotes), np.concatenate(escaped)
    if len(escaped):
        if len(escaped) > 10_000:  # not worth the Python loop below
            return None
        real = [p for p in escaped.tolist() if _backslashes_before(body, p) % 2 == 0]
        q = np.setdiff1d(q, np.setdiff1d(escaped, real))
    return q


def _refuse_too_many_values(
    body: bytes | bytearray, strings: np.ndarray | None, width: int, max_rows: int
) -> None:
    """413 before parsing when the body holds more values than ``max_rows`` full rows can: its
    commas outside strings (all commas if strings are unknown) bound the objects a parse would
    make, whatever the shape (60 MB of ``[1,1,1,...`` would be 30 million of them)."""
    data = np.frombuffer(body, dtype=np.uint8)
    commas = 0
    for block in range(0, len(data), _BLOCK):
        found = np.flatnonzero(data[block : block + _BLOCK] == ord(",")) + block
        commas += (
            len(found) if strings is None else int(np.count_nonzero(np.searchsorted(strings, found) % 2 == 0))
        )
    limit = max_rows * (width + 1)
    if commas > limit:
        raise RequestError(
            [
                Problem(
                    f"the request has {commas} values or more, more than {max_rows} rows of "
                    f"{width} columns can have (this server's limit is {max_rows} rows); split it"
                )
            ],
            status=413,
        )


def record_slices(body: bytes | bytearray, strings: np.ndarray) -> Iterator[tuple[int, bytes]] | None:
    """A ``[...]`` or ``{"records": [...]}`` body cut between records into JSON arrays of about
    ``SLICE_BYTES`` each, as (first byte, slice) pairs; None for any other shape (parsed whole).

    ``strings`` are the string quotes (``string_quotes``); braces and brackets outside strings
    give the nesting depth. For valid JSON the slices hold exactly the body's records; for
    invalid JSON some slice fails to parse, naming where."""
    head = _RECORDS_HEAD.match(body)
    if head is None:
        return None
    data = np.frombuffer(body, dtype=np.uint8)
    structure = []
    for block in range(0, len(data), _BLOCK):
        folded = data[block : block + _BLOCK] | 0x20  # [ and ] differ from { and } by this bit only
        structure.append(np.flatnonzero((folded == ord("{")) | (folded == ord("}"))) + block)
    marks = np.concatenate(structure)
    marks = marks[np.searchsorted(strings, marks) % 2 == 0]  # outside strings
    opening = (data[marks] == ord("{")) | (data[marks] == ord("["))
    depth = np.cumsum(np.where(opening, 1, -1))
    level = int(depth[np.searchsorted(marks, head.end() - 1)])  # depth inside the records array
    ends = marks[(data[marks] == ord("}")) & (depth == level)]
    closing = marks[(depth == level - 1) & ~opening]
    if not len(closing) or not len(ends) or ends[-1] > closing[0]:
        return None
    tail = body[int(ends[-1]) + 1 : int(closing[0])]
    close = _CLOSE[head.group(1) is not None]
    if (tail and not tail.isspace()) or close.match(body, int(closing[0])) is None:
        return None
    cuts = np.unique(np.searchsorted(ends, np.arange(head.end() + SLICE_BYTES, ends[-1], SLICE_BYTES)))
    bounds = [int(ends[i]) + 1 for i in cuts if i < len(ends) - 1] + [int(ends[-1]) + 1]
    return _slices(body, head.end(), bounds)


def _slices(body: bytes | bytearray, start: int, bounds: list[int]) -> Iterator[tuple[int, bytes]]:
    view, first = memoryview(body), True
    for end in bounds:
        piece = bytes(view[start:end]).lstrip()
        if not first:
            piece = piece[1:] if piece[:1] == b"," else b"!"  # a missing comma is invalid JSON
        yield start, b"[" + piece + b"]"
        start, first = end, False


def _backslashes_before(body: bytes | bytearray, position: int) -> int:
    count = 0
    while position - count - 1 >= 0 and body[position - count - 1] == 0x5C:
        count += 1
    return count


def _raw_columns(
    payload: Any, features: tuple[Feature, ...], ignored: frozenset[str]
) -> tuple[dict[str, list], int]:
    if isinstance(payload, list):
        return _from_records(payload, features, "", ignored=ignored)
    if not isinstance(payload, dict):
        got = _JSON_NAMES.get(type(payload), type(payload).__name__)
        raise RequestError([Problem(f'expected {{"records": [...]}} or {{"columns": {{...}}}}, got {got}')])
    keys = set(payload)
    if keys == {"records"}:
        if not isinstance(payload["records"], list):
            raise RequestError([Problem("'records' must be a list of objects", field="records")])
        return _from_records(payload["records"], features, "records", ignored=ignored)
    if keys == {"columns"}:
        if not isinstance(payload["columns"], dict):
            raise RequestError([Problem("'columns' must be an object {column: [values]}", field="columns")])
        return _from_columns(payload["columns"], features, ignored)
    unknown = sorted(keys - {"records", "columns"})
    if unknown:
        hint = did_you_mean(unknown[0], ["records", "columns"])
        raise RequestError(
            [
                Problem(
                    f"unknown top-level key {unknown[0]!r}; expected 'records' or 'columns'.{hint}",
                    field=unknown[0],
                )
            ]
        )
    raise RequestError([Problem("send either 'records' or 'columns', not both")])


def _from_records(
    records: list,
    features: tuple[Feature, ...],
    where: str,
    offset: int = 0,
    ignored: frozenset[str] = frozenset(),
) -> tuple[dict[str, list], int]:
    names = [f.name for f in features]
    expected = set(names)
    problems: list[Problem] = []
    for i, record in enumerate(records, offset):
        if not isinstance(record, dict):
            got = _JSON_NAMES.get(type(record), type(record).__name__)
            problems.append(
                Problem(f"row {i} is {got}; expected an object {{column: value}}", field=where or None, row=i)
            )
        elif record.keys() != expected:  # the common case (a well-formed row) costs one set comparison
            got = record.keys() - ignored
            if got != expected:
                problems.extend(_key_problems(got, names, row=i))
    if problems:
        raise RequestError(problems, total=len(problems))
    return {name: list(map(itemgetter(name), records)) for name in names}, len(records)


def _from_columns(
    columns: dict, features: tuple[Feature, ...], ignored: frozenset[str] = frozenset()
) -> tuple[dict[str, list], int]:
    expected = {f.name for f in features}
    problems = _key_problems(columns.keys() - ignored, [f.name for f in features], row=None)
    lengths = {}
    for name, values in columns.items():
        if name in expected and not isinstance(values, (list, np.ndarray)):  # arrays: V2 binary tensors
            problems.append(Problem(f"column {name!r} must be a list of values", field=name))
        elif name in expected:
            lengths[name] = len(values)
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={n}" for name, n in sorted(lengths.items()))
        problems.append(
            Problem(f"the columns have different lengths ({listed}); every column needs one value per row")
        )
    if problems:
        raise RequestError(problems)
    return {f.name: columns[f.name] for f in features}, next(iter(lengths.values()), 0)


def _key_problems(got: set[str], names: list[str], row: int | None) -> list[Problem]:
    """Missing columns in signature order, then unknown ones."""
    where = f" in row {row}" if row is not None else ""
    expected = set(names)
    problems = [
        Problem(f"missing column {name!r}{where}; send null for a missing value", field=name, row=row)
        for name in names
        if name not in got
    ]
    problems += [
        Problem(
            f"unknown column {name!r}{where}; the model takes {', '.join(names)}.{did_you_mean(name, names)}",
            field=name,
            row=row,
        )
        for name in sorted(got - expected)
    ]
    return problems


def _checked(raw: dict[str, list], rows: int, features: tuple[Feature, ...], offset: int = 0) -> Batch:
    problems: list[Problem] = []
    columns: dict[str, np.ndarray] = {}
    for feature in features:
        values = raw[feature.name]
        if isinstance(values, np.ndarray) and feature.kind == "numeric":  # decoded binary, already float64
            if (huge := _too_large(values)).any():
                row = int(np.flatnonzero(huge)[0])
                problems.append(_too_large_problem(feature, float(values[row]), row + offset))
            else:
                columns[feature.name] = values
            continue
        if isinstance(values, np.ndarray):
            values = values.tolist()
        if feature.kind == "numeric":
            allowed = _NUMERIC_TYPES
        elif feature.kind == "datetime":
            allowed = _DATE_TYPES
        else:
            allowed = frozenset((*feature.category_types, type(None)))
        # set(map(type, ...)) runs in C: the common, valid column costs no Python-level loop.
        if set(map(type, values)) <= allowed:
            columns[feature.name] = _column(feature, values)
            if feature.kind == "numeric" and (huge := _too_large(columns[feature.name])).any():
                problems += [_too_large_problem(feature, values[i], int(i) + offset) for i in np.flatnonzero(huge)]
            if feature.kind == "datetime":
                problems += _date_problems(feature, columns[feature.name])
        else:
            problems += [
                _type_problem(feature, v, i) for i, v in enumerate(values, offset) if type(v) not in allowed
            ]
    if problems:
        raise RequestError(problems, total=len(problems))
    return Batch(columns, rows)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _too_large(column: np.ndarray) -> np.ndarray:
    """Values no model can take: infinite, or beyond float32 (what trees and ONNX compute in: 1e300
    passed the check, then the model refused the whole request without naming a field or row)."""
    with np.errstate(invalid="ignore"):
        return np.abs(column) > FLOAT32_MAX


def _column(feature: Feature, values: list) -> np.ndarray:
    if feature.kind == "numeric":
        return np.array(values, dtype=np.float64)  # None becomes NaN, imputed as in training
    column = np.array(values, dtype=object)
    column[pd.isna(column)] = np.nan  # training's form of a missing category
    return column


def _date_problems(feature: Feature, column: np.ndarray) -> list[Problem]:
    """Date strings the model would read as missing: parsed the way training parsed them."""
    from provenflow.data.dates import parse_dates

    present = ~pd.isna(column)
    bad = present & pd.isna(parse_dates(pd.Series(column, dtype=object), feature.date_format)).to_numpy()
    return [_type_problem(feature, column[i], int(i)) for i in np.flatnonzero(bad)]


def _too_large_problem(feature: Feature, value: float, row: int) -> Problem:
    return Problem(
        f"row {row}, column {feature.name!r}: expected a number within ±3.4e38 (float32), got "
        + ("infinity" if np.isinf(value) else repr(value)),
        field=feature.name,
        row=row,
    )


def _type_problem(feature: Feature, value: Any, row: int) -> Problem:
    got = _JSON_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, (str, int, float, bool)):
        shown = repr(value)
        got += " " + (shown if len(shown) <= 60 else shown[:57] + "...")
    return Problem(
        f"row {row}, column {feature.name!r}: expected {feature.expected}, got {got}",
        field=feature.name,
        row=row,
    )
