import json

import pandas as pd
import pytest

from provenflow import validation
from provenflow.datasets import read_table
from provenflow.errors import ConfigError, ValidationFailed
from tests.conftest import PENGUINS


@pytest.fixture
def frame():
    return read_table(str(PENGUINS))


def test_default_suite_is_created_from_first_good_data(tmp_path, frame):
    path = tmp_path / "expectations" / "penguins.json"
    report = validation.validate_dataset("penguins", frame, path, create_if_missing=True)
    assert report.success and report.created_suite and report.evaluated == report.successful
    suite = json.loads(path.read_text())
    types = {e["type"] for e in suite["expectations"]}
    assert {"expect_table_columns_to_match_set", "expect_column_values_to_be_in_type_list"} <= types
    again = validation.validate_dataset("penguins", frame, path, create_if_missing=True)
    assert not again.created_suite


def test_changed_column_type_fails_against_the_suite(tmp_path, frame):
    path = tmp_path / "suite.json"
    validation.save_suite(path, validation.default_suite("penguins", frame))
    changed = frame.copy()
    changed["bill_length_mm"] = changed["bill_length_mm"].astype(str) + "mm"
    with pytest.raises(
        ValidationFailed, match="expect_column_values_to_be_in_type_list on 'bill_length_mm'"
    ) as info:
        validation.validate_dataset("penguins", changed, path, create_if_missing=False)
    assert [f["column"] for f in info.value.failed] == ["bill_length_mm"]


def test_failing_expectations_are_listed(tmp_path, frame):
    path = tmp_path / "suite.json"
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
    path.write_text(json.dumps(suite))
    with pytest.raises(ValidationFailed) as info:
        validation.validate_dataset("penguins", frame, path, create_if_missing=False)
    message = str(info.value)
    assert "2 of 3 expectations" in message
    assert "expect_column_values_to_be_between on 'year'" in message
    assert "expect_column_values_to_not_be_null on 'sex'" in message


def test_missing_and_malformed_suites(tmp_path, frame):
    with pytest.raises(ConfigError, match="no expectation suite"):
        validation.validate_dataset("x", frame, tmp_path / "absent.json", create_if_missing=False)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        validation.validate_dataset("x", frame, bad, create_if_missing=False)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"name": "u", "expectations": [{"type": "expect_the_moon", "kwargs": {}}]}))
    with pytest.raises(ConfigError, match="invalid"):
        validation.validate_dataset("x", frame, unknown, create_if_missing=False)


def test_integers_may_become_floats_without_a_type_failure(tmp_path):
    first = pd.DataFrame({"n": [1, 2, 3], "s": ["a", "b", "c"]})
    path = tmp_path / "suite.json"
    validation.save_suite(path, validation.default_suite("t", first))
    later = pd.DataFrame({"n": [1.5, 2.0, 3.0], "s": ["a", "b", "d"]})
    assert validation.validate_dataset("t", later, path, create_if_missing=False).success
