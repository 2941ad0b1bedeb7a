import json

import pandas as pd
import pytest

from provenflow.data import validation
from provenflow.data.datasets import read_table
from provenflow.errors import ConfigError, ValidationFailed
from tests.conftest import PENGUINS


@pytest.fixture
def frame():
    return read_table(str(PENGUINS))


def test_default_suite_from_first_good_data(frame):
    suite = validation.generated_suite("penguins", frame, "somewhere/penguins.json")
    report = validation.validate_dataset(frame, suite)
    assert report.success and report.created_suite and report.evaluated == report.successful
    assert report.suite_path == "somewhere/penguins.json"
    types = {e["type"] for e in json.loads(suite.data)["expectations"]}
    assert {"expect_table_columns_to_match_set", "expect_column_values_to_be_in_type_list"} <= types


def _suite_file(path, content: dict) -> validation.Suite:
    validation.save_suite(path, validation.suite_bytes(content))
    return validation.read_suite(path)


def test_changed_column_type_fails_against_the_suite(tmp_path, frame):
    suite = _suite_file(tmp_path / "suite.json", validation.default_suite("penguins", frame))
    changed = frame.copy()
    changed["bill_length_mm"] = changed["bill_length_mm"].astype(str) + "mm"
    with pytest.raises(
        ValidationFailed, match="expect_column_values_to_be_in_type_list on 'bill_length_mm'"
    ) as info:
        validation.validate_dataset(changed, suite)
    assert [f["column"] for f in info.value.failed] == ["bill_length_mm"]



def test_one_word_among_numbers_is_named_when_it_makes_the_column_text(tmp_path, frame):
    """Before: 'observed 560 unexpected values, e.g. [39.81, 36.35, …]': the good values, never the
    'abc' that made the column text."""
    suite = _suite_file(tmp_path / "suite.json", validation.default_suite("penguins", frame))
    changed = frame.copy()
    changed["bill_length_mm"] = changed["bill_length_mm"].astype(object)
    changed.loc[7, "bill_length_mm"] = "abc"
    with pytest.raises(ValidationFailed) as info:
        validation.validate_dataset(changed, suite)
    (failure,) = info.value.failed
    assert "1 value(s) that are not numbers: 'abc' (row 7)" in failure["observed"]
    assert "'abc' (row 7)" in str(info.value)

def test_failing_expectations_are_listed(tmp_path, frame):
    suite = {
        "name": "strict",
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "year", "min_value": 2007, "max_value": 2008},
            },
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "sex"}},
            {"type": "expect_column_to_exist", "kwargs": {"column": "island"}},
        ],
    }
    with pytest.raises(ValidationFailed) as info:
        validation.validate_dataset(frame, _suite_file(tmp_path / "suite.json", suite))
    message = str(info.value)
    assert "2 of 3 expectations" in message
    assert "expect_column_values_to_be_between on 'year'" in message
    assert "expect_column_values_to_not_be_null on 'sex'" in message


def test_missing_and_malformed_suites(tmp_path, frame):
    with pytest.raises(ConfigError, match="no expectation suite"):
        validation.read_suite(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        validation.read_suite(bad)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"name": "u", "expectations": [{"type": "expect_the_moon", "kwargs": {}}]}))
    with pytest.raises(ConfigError, match="invalid"):
        validation.validate_dataset(frame, validation.read_suite(unknown))


def test_integers_may_become_floats_without_a_type_failure(tmp_path):
    first = pd.DataFrame({"n": [1, 2, 3], "s": ["a", "b", "c"]})
    suite = _suite_file(tmp_path / "suite.json", validation.default_suite("t", first))
    later = pd.DataFrame({"n": [1.5, 2.0, 3.0], "s": ["a", "b", "d"]})
    assert validation.validate_dataset(later, suite).success


def test_a_suite_generated_from_a_sample_knows_the_gaps_outside_it():
    from provenflow.data.validation import default_suite

    sample = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})  # no gaps in the sampled rows
    suite = default_suite("t", sample, missing={"a": 3, "b": 0})
    not_null = {e["kwargs"]["column"] for e in suite["expectations"] if e["type"] == "expect_column_values_to_not_be_null"}
    assert not_null == {"b"}
