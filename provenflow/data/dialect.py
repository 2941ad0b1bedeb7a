"""How a CSV file a user brings is written: separator, encoding, gap markers, decimal mark, header.

Public data sets are rarely plain UTF-8 comma files with a header: spreadsheet exports are
Windows-1252 and ';'-separated with decimal commas, UCI files separate fields with ', ', mark gaps
with '?' and have no header row. One sniff of the first 64 KiB decides how to read the file; the
pyarrow reader of a data-run (ingest/csv_source.py) and the pandas reader (datasets.read_table) both read it
with the same ``Dialect``, so they give the same table. What was inferred is told to the user
(``Dialect.notes``). A plain UTF-8 comma file with a header gets the default dialect and is read
exactly as before (same canonical bytes, same hash).

What the first 64 KiB cannot show is found while reading: a non-UTF-8 byte further on moves to the
next encoding of ``ENCODINGS``, a gap marker further on in a numeric column is added (``with_marker``),
and the pass starts again.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from provenflow.errors import DataError

SNIFF_BYTES = 64 * 1024
DELIMITERS = (",", "\t", ";", "|")
# Tried in order; latin-1 decodes any byte, so it is the last resort (binary files are refused first).
ENCODINGS = ("utf-8", "cp1252", "latin-1")
# Written for a gap in a numeric column by UCI files ('?') and others. Read as missing only when a
# column would be numeric but for them; then everywhere in the file (pyarrow's null values are per file).
MARKERS = frozenset({"?", "-", "--", ".", "missing", "none"})
# pyarrow's default null values (pa_csv.ConvertOptions().null_values), kept when markers are added.
ARROW_NULLS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null",
)  # fmt: skip
TRUE_VALUES = ("True", "TRUE", "true")
FALSE_VALUES = ("False", "FALSE", "false")
# A number as the CSV readers convert one, with '.' or ',' as decimal mark (RE2 and Python alike).
NUMBER = {
    ".": r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$",
    ",": r"^\s*[-+]?(\d+(,\d*)?|,\d+)([eE][-+]?\d+)?\s*$",
}
_NUMBER = {mark: re.compile(pattern) for mark, pattern in NUMBER.items()}
# '1,000' may be a thousands separator (US tab-separated exports): not counted as a decimal comma.
_COMMA_DECIMAL = re.compile(r"-?\d+,(\d{1,2}|\d{4,})")
_POINT_DECIMAL = re.compile(r"-?\d+\.(\d{1,2}|\d{4,})")  # 1.234 may be a thousands separator: not counted


@dataclass(frozen=True)
class Dialect:
    """How to read one CSV file; the defaults are a plain UTF-8 comma file with a header row."""

    delimiter: str = ","
    encoding: str = "utf-8"
    initial_space: bool = False  # every field after a separator starts with a space: it is dropped
    markers: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (gap marker, numeric columns it was found in)
    decimal_point: str = "."
    decimal_columns: tuple[str, ...] = ()  # the columns that showed decimal commas
    header: bool = True
    names: tuple[str, ...] | None = None  # column_1..column_N when there is no header row
    unnamed: tuple[str, ...] = ()  # names given to header fields left empty (R's row names column)

    @property
    def null_values(self) -> list[str]:
        return [*ARROW_NULLS, *(m for m, _ in self.markers)]

    def is_marker(self, value: str) -> bool:
        return value.strip().casefold() in MARKERS

    def with_marker(self, marker: str, column: str) -> Dialect:
        marker = marker.strip()
        found = dict(self.markers)
        found[marker] = tuple(sorted({*found.get(marker, ()), column}))
        return replace(self, markers=tuple(sorted(found.items())))

    def without_column(self, column: str) -> Dialect:
        """COLUMN turned out to be text: its markers no longer mark gaps there (nor anywhere, if it
        was the only column that showed them)."""
        kept = tuple(
            (m, cols)
            for m, cols in ((m, tuple(c for c in cols if c != column)) for m, cols in self.markers)
            if cols
        )
        return replace(self, markers=kept)

    def next_encoding(self) -> Dialect | None:
        at = ENCODINGS.index(self.encoding)
        return replace(self, encoding=ENCODINGS[at + 1]) if at + 1 < len(ENCODINGS) else None

    def notes(self) -> list[dict]:
        """What was inferred, as run warnings ({"level", "message"}) the data-run records and shows."""
        notes = []
        if not self.header and self.names:
            notes.append(
                {
                    "level": "warning",
                    "message": f"no header row: the first line is data, so the columns are named "
                    f"column_1..column_{len(self.names)}; add a line of column names at the top of the "
                    "file to name them",
                }
            )
        if self.unnamed:
            notes.append(
                {
                    "level": "notice",
                    "message": f"the header leaves {len(self.unnamed)} column{'s' if len(self.unnamed) > 1 else ''} "
                    f"without a name (R's write.csv does so for row names): named {', '.join(self.unnamed)}",
                }
            )
        if self.encoding != "utf-8":
            notes.append({"level": "notice", "message": f"read as {self.encoding} (not UTF-8)"})
        if self.initial_space:
            notes.append(
                {
                    "level": "notice",
                    "message": f"fields are separated by {self.delimiter!r} and a space: the space is "
                    "dropped from column names and values",
                }
            )
        for marker, columns in self.markers:
            where = ", ".join(repr(c) for c in columns)
            notes.append(
                {
                    "level": "notice",
                    "message": f"{marker!r} read as missing (column{'s' if len(columns) > 1 else ''} "
                    f"{where}), in every column",
                }
            )
        if self.decimal_point != ".":
            where = ", ".join(repr(c) for c in self.decimal_columns)
            plural = "s" if len(self.decimal_columns) > 1 else ""
            notes.append(
                {
                    "level": "notice",
                    "message": f"decimal commas: '3,14' read as 3.14 (column{plural} {where})",
                }
            )
        return notes

    def pandas_options(self) -> dict:
        """pandas.read_csv's arguments for this dialect (the same table as the pyarrow reader)."""
        options: dict = {"sep": self.delimiter, "encoding": self.encoding}
        if self.initial_space:
            options["skipinitialspace"] = True
        if self.markers:
            options["na_values"] = [m for m, _ in self.markers]
        if self.decimal_point != ".":
            options["decimal"] = self.decimal_point
        if not self.header:
            options.update(header=None, names=list(self.names or ()))
        elif self.names is not None:
            options.update(header=0, names=list(self.names))
        return options


def is_number(value: str, decimal_point: str = ".") -> bool:
    return bool(_NUMBER[decimal_point].match(value))


def gap_markers(non_numbers: Iterable[str]) -> set[str] | None:
    """The markers among a numeric column's values that are not numbers; None if any is not a marker."""
    found = set()
    for value in non_numbers:
        if value.strip().casefold() not in MARKERS:
            return None
        found.add(value.strip())
    return found


def refuse_binary(head: bytes, shown: str) -> None:
    """A file with NUL bytes or many control characters is not text in any encoding (a PNG or a
    zip renamed .csv): say so, rather than decode it as latin-1. UTF-16 (NUL bytes too) is named."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(
            f"{shown!r} is not text in UTF-8 but UTF-16 (its first bytes say so, as in Excel's 'Unicode "
            "Text' files); save it as 'CSV UTF-8' or convert it with: iconv -f UTF-16 -t UTF-8"
        )
    nul = head.find(b"\x00")
    controls = sum(head.count(bytes([b])) for b in (*range(1, 9), 11, *range(14, 26), *range(27, 32)))
    if nul >= 0 or controls > max(len(head) // 100, 2):
        at = f"a NUL byte at byte {nul}" if nul >= 0 else f"{controls} control characters in its first bytes"
        raise DataError(
            f"{shown!r} is not text in UTF-8 or any other encoding ({at}, as in binary files); is it really CSV?"
        )


def sniff(head: bytes, fmt: str, shown: str) -> Dialect:
    """The dialect of a CSV file from its first SNIFF_BYTES (HEAD) bytes."""
    refuse_binary(head, shown)
    if len(head) >= SNIFF_BYTES and b"\n" in head:
        head = head[: head.rindex(b"\n") + 1]  # cut mid-line (and maybe mid-character)
    for encoding in ENCODINGS:
        try:
            # final=False: a character cut at the end of the head (a line longer than it) is not an error.
            text = codecs.getincrementaldecoder("utf-8-sig" if encoding == "utf-8" else encoding)().decode(
                head
            )
            break
        except UnicodeDecodeError:
            continue
    delimiter = "\t" if fmt == "tsv" else _delimiter(text)
    rows = _rows(text, delimiter, initial_space=False)
    initial_space = delimiter != " " and _initial_space(rows)
    if initial_space:
        rows = _rows(text, delimiter, initial_space=True)
    dialect = Dialect(delimiter=delimiter, encoding=encoding, initial_space=initial_space)
    if not rows:
        return dialect
    first, body = rows[0], rows[1:]
    width = len(first)
    columns = [[r[j] for r in body if len(r) > j and r[j] not in ARROW_NULLS] for j in range(width)]
    if delimiter in (";", "\t") and _decimal_commas(columns):
        decimal = [
            j for j, values in enumerate(columns) if any(_COMMA_DECIMAL.fullmatch(v.strip()) for v in values)
        ]
        dialect = replace(dialect, decimal_point=",")
    else:
        decimal = []
    kinds, found = [], []
    for values in columns:
        numbers = [v for v in values if is_number(v, dialect.decimal_point)]
        others = [v for v in values if not is_number(v, dialect.decimal_point)]
        markers = gap_markers(others) if numbers else None
        kinds.append("number" if numbers and markers is not None else "text" if values else None)
        found.append(markers or set())
    # An empty first field over a column with no gaps is a header's nameless row-names column
    # (R's '"","1940","1945"'), whatever the other names look like.
    nameless = any(not first[j].strip() and len(columns[j]) == len(body) for j in range(width))
    if body and not nameless and _looks_like_data(first, columns, kinds, dialect):
        names = tuple(f"column_{j + 1}" for j in range(width))
        dialect = replace(dialect, header=False, names=names)
        # The first row is data too: a marker there counts (pandas' and pyarrow's null values apply to it).
        for j, value in enumerate(first):
            if kinds[j] == "number" and dialect.is_marker(value):
                found[j].add(value.strip())
    elif any(not name.strip() for name in first):
        names = tuple(name if name.strip() else f"column_{j + 1}" for j, name in enumerate(first))
        unnamed = tuple(names[j] for j, name in enumerate(first) if not name.strip())
        dialect = replace(dialect, names=names, unnamed=unnamed)
    names = dialect.names or tuple(first)
    for j, markers in enumerate(found):
        for marker in sorted(markers):
            dialect = dialect.with_marker(marker, names[j])
    if decimal:
        dialect = replace(dialect, decimal_columns=tuple(names[j] for j in decimal))
    return dialect


def _delimiter(text: str) -> str:
    """The first of , TAB ; | that splits the first row into several columns and every following row
    of the head into as many; ',' when none does (the parser then says what is wrong)."""
    for delimiter in DELIMITERS:
        for initial_space in (False, True):  # '1, "x, y", 2' has 3 fields
            widths = {len(row) for row in _rows(text, delimiter, initial_space)}
            if len(widths) == 1 and widths.pop() > 1:
                return delimiter
    return ","


def _rows(text: str, delimiter: str, initial_space: bool) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=initial_space)
    rows = []
    try:
        for row in reader:
            if any(field.strip() for field in row):
                rows.append(row)
            if len(rows) == 200:
                break
    except csv.Error:
        pass  # a quote left open where the head was cut
    return rows


def _initial_space(rows: list[list[str]]) -> bool:
    """Every field after a separator starts with a space (UCI's '39, State-gov, 77516')."""
    after = [field for row in rows for field in row[1:] if field != ""]
    return bool(after) and all(field.startswith(" ") and field.strip() for field in after)


def _decimal_commas(columns: list[list[str]]) -> bool:
    """Some column's values are numbers with a decimal comma and none's are numbers with a point."""
    commas = points = False
    for values in columns:
        values = [v.strip() for v in values]
        if values and all(is_number(v, ",") for v in values if v.strip().casefold() not in MARKERS):
            commas |= any(_COMMA_DECIMAL.fullmatch(v) for v in values)
        if values and all(is_number(v, ".") for v in values if v.strip().casefold() not in MARKERS):
            points |= any(_POINT_DECIMAL.fullmatch(v) for v in values)
    return commas and not points


def _looks_like_data(first: list[str], columns: list[list[str]], kinds: list, dialect: Dialect) -> bool:
    """The first row is data, not a header: a field of it is a number, each field is of the kind
    (number or text) of its column below, and where there are text columns, one of its text values
    comes again below (a header's names do not: 'id,2019,2020,name' and 'year,value' stay headers).
    Consecutive integers ('0,1,2,3' as pandas names a numpy array's columns, '2019,2020') are names."""
    if not any(is_number(v, dialect.decimal_point) for v in first):
        return False
    if len(first) > 1 and all(re.fullmatch(r"\d+", v.strip()) for v in first):
        numbers = [int(v) for v in first]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            return False
    texts = recurring = 0
    for j, value in enumerate(first):
        if j >= len(kinds) or value in ARROW_NULLS or dialect.is_marker(value) or kinds[j] is None:
            continue
        kind = "number" if is_number(value, dialect.decimal_point) else "text"
        if kind != kinds[j]:
            return False
        if kind == "text":
            texts += 1
            recurring += value in columns[j]
    return texts == 0 or recurring > 0
