"""Data validation with Great Expectations 1.x suites kept as JSON in the project.

Great Expectations costs ~2 s to import, so it is imported inside the functions that use it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from provenflow.errors import ConfigError, ValidationFailed

INT_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
]
FLOAT_TYPES = ["float16", "float32", "float64", "Float32", "Float64"]
STRING_TYPES = ["str", "object", "string"]
BOOL_TYPES = ["bool", "boolean"]


@dataclass
class ValidationReport:
    suite: str
    suite_path: str
    created_suite: bool
    success: bool
    evaluated: int
    successful: int
    failed: list[dict] = field(default_factory=list)
    on: str = "all rows"  # or "a seeded sample of N of M rows" (a table larger than the sample)
    skipped: int = 0  # expectations beyond the budget (settings.max_expectations), not evaluated
    notice: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def type_family(series: pd.Series) -> list[str]:
    """Types a column may take in later versions without counting as a schema change.

    Integers and floats are one family: a missing value turns an int64 column into float64.
    Great Expectations checks an object column value by value, so its family names the Python
    types of its values (a CSV column of True/False with a blank is object dtype holding bools).
    """
    dtype = str(series.dtype)
    if dtype in INT_TYPES or dtype in FLOAT_TYPES:
        return INT_TYPES + FLOAT_TYPES
    if dtype in BOOL_TYPES:
        return BOOL_TYPES
    if dtype.startswith("datetime64"):
        return [f"datetime64[{unit}]" for unit in ("s", "ms", "us", "ns")]
    if dtype == "category":
        return ["category", *STRING_TYPES]
    if dtype == "object":
        seen = {type(v).__name__ for v in series.dropna().head(1000)}
        return sorted(set(STRING_TYPES) | seen)
    return STRING_TYPES


def default_suite(name: str, frame: pd.DataFrame, missing: dict[str, int] | None = None) -> dict:
    """A starting suite from a first good dataset: columns, their types, non-null where none were.
    MISSING counts each column's missing values over the whole table when FRAME is a sample of it."""
    expectations: list[dict] = [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": [str(c) for c in frame.columns]},
        },
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
    ]
    for column in frame.columns:
        expectations.append(
            {
                "type": "expect_column_values_to_be_in_type_list",
                "kwargs": {"column": str(column), "type_list": type_family(frame[column])},
            }
        )
        gaps = missing[str(column)] if missing is not None else frame[column].isna().any()
        if not gaps:
            expectations.append(
                {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": str(column)}}
            )
    return {
        "name": name,
        "expectations": expectations,
        "meta": {"generated_by": "provenflow", "note": "Generated from the first dataset; edit freely."},
    }


@dataclass(frozen=True)
class Suite:
    """An expectation suite as its exact bytes (stored with the run that used it) and where it came from."""

    data: bytes
    where: str  # a path, or the run whose recorded suite this is
    created: bool = False  # generated from this run's data
    # What to do when the data no longer keeps to it (for a suite the user did not choose).
    remedy: str | None = None

    @property
    def content(self) -> dict:
        return parse_suite(self.data, self.where)


def parse_suite(data: bytes, where: str) -> dict:
    try:
        suite = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"expectation suite {where!r} is not valid JSON: {exc}") from None
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise ConfigError(f"expectation suite {where!r} needs a list under 'expectations'")
    return suite


def read_suite(path: Path) -> Suite:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(
            f"no expectation suite at {str(path)!r}; give the path of a suite JSON file"
        ) from None
    parse_suite(data, str(path))
    return Suite(data, str(path))


def generated_suite(
    name: str, frame: pd.DataFrame, where: str, missing: dict[str, int] | None = None
) -> Suite:
    return Suite(suite_bytes(default_suite(name, frame, missing)), where, created=True)


def suite_bytes(suite: dict) -> bytes:
    return (json.dumps(suite, indent=2) + "\n").encode()


def save_suite(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def validate(frame: pd.DataFrame, suite: dict) -> tuple[bool, int, int, list[dict]]:
    """Run a suite on a frame: (success, evaluated, successful, failed expectations). Only the
    suite's first ``budget(suite)`` expectations are given (``validate_dataset`` says so)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    expectations = suite["expectations"][: budget(suite)]
    try:
        gx_suite = gx.ExpectationSuite(name=suite.get("name") or "suite", expectations=expectations)
    except Exception as exc:  # GX raises a zoo of types for a bad configuration
        raise ConfigError(f"expectation suite {suite.get('name')!r} is invalid: {exc}") from None
    if len(gx_suite.expectations) != len(expectations):
        raise ConfigError(
            f"expectation suite {suite.get('name')!r}: {len(expectations) - len(gx_suite.expectations)} "
            "expectation(s) have an invalid configuration (unknown type or arguments)"
        )
    source = context.data_sources.add_pandas("provenflow")
    batch = (
        source.add_dataframe_asset(name="frame")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": _for_gx(frame)})
    )
    result = batch.validate(gx_suite)
    failed = []
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
        observed = item.result.get("observed_value")
        if observed is None and "unexpected_count" in item.result:
            observed = f"{item.result['unexpected_count']} unexpected values, e.g. {item.result.get('partial_unexpected_list', [])[:5]}"
        if item.exception_info and item.exception_info.get("raised_exception"):
            observed = item.exception_info.get("exception_message")
        if config.type in _TYPE_EXPECTATIONS and kwargs.get("column") in frame.columns:
            observed = f"{observed}{_not_numbers(frame[kwargs['column']])}"
        failed.append(
            {
                "expectation": config.type,
                "column": kwargs.get("column"),
                "kwargs": kwargs,
                "observed": _plain(observed),
            }
        )
    stats = result.statistics
    return (
        bool(result.success),
        int(stats["evaluated_expectations"]),
        int(stats["successful_expectations"]),
        failed,
    )


_TYPE_EXPECTATIONS = ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type")


def _not_numbers(column: pd.Series) -> str:
    """For a column read as text where numbers were expected: the few values that made it text (one
    'abc' among 560 prices turns the whole column to text, and the type expectation then lists good
    values as unexpected). '' when the column is not text, or none of its values is a number."""
    if column.dtype != object and not pd.api.types.is_string_dtype(column):
        return ""
    present = column.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    bad = present[numbers.isna()]
    if bad.empty or numbers.notna().sum() == 0:
        return ""
    shown = ", ".join(f"{v!r} (row {i})" for i, v in bad.head(3).items())
    return f"; the column is text because of {len(bad)} value(s) that are not numbers: {shown}"


def budget(suite: dict) -> int:
    """How many of SUITE's expectations are evaluated: Great Expectations spends ~9 ms on each
    whatever the rows, so a wide table's suite is cut at settings.max_expectations (in its order)."""
    from provenflow.settings import get_settings

    return min(len(suite["expectations"]), get_settings().max_expectations)


def validate_dataset(frame: pd.DataFrame, suite: Suite, on: str = "all rows") -> ValidationReport:
    """Validate a frame against a suite; ValidationFailed lists every failed expectation.
    ON says which rows FRAME holds, for the report and the error."""
    content = suite.content
    success, evaluated, successful, failed = validate(frame, content)
    skipped = len(content["expectations"]) - budget(content)
    notice = (
        f"{skipped} of {len(content['expectations'])} expectations in suite {suite.where!r} were not "
        f"evaluated: the first {budget(content)} were (the budget; raise PROVENFLOW_MAX_EXPECTATIONS to "
        "evaluate more, at ~9 ms each)"
        if skipped
        else ""
    )
    report = ValidationReport(
        content.get("name") or "suite", suite.where, suite.created, success, evaluated, successful, failed, on,
        skipped, notice,
    )  # fmt: skip
    if not success:
        lines = [
            f"  - {f['expectation']}"
            + (f" on {f['column']!r}" if f["column"] else "")
            + f": observed {f['observed']}"
            for f in failed
        ]
        raise ValidationFailed(
            f"{len(failed)} of {evaluated} expectations in suite {suite.where!r} failed"
            + ("" if on == "all rows" else f" (validated on {on})")
            + ":\n"
            + "\n".join(lines)
            + (f"\n{suite.remedy}" if suite.remedy else ""),
            failed=failed,
        )
    return report


def _for_gx(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as GX's type checks understand it: pandas 3 string columns as object (GX does
    not know the 'str' dtype) and time-zone-aware timestamps as naive UTC (GX sees 'Timestamp')."""
    changes = {}
    for column, dtype in frame.dtypes.items():
        if isinstance(dtype, pd.StringDtype):
            changes[column] = frame[column].astype(object)
        elif isinstance(dtype, pd.DatetimeTZDtype):
            changes[column] = frame[column].dt.tz_convert(None)
    if not changes:
        return frame
    adapted = frame.copy(deep=False)
    for column, values in changes.items():
        adapted[column] = values
    return adapted


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)
