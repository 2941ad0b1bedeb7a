"""Column roles, the user's feature choice, and the checks a model run warns with."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from provenflow.data import data_checks, datasets, features
from provenflow.data.features import FeatureChoice
from provenflow.errors import TrainingError
from provenflow.modeling import training
from tests.conftest import PENGUINS
from tests.mixed_table import mixed_table


def _csv(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)))


@pytest.fixture(scope="module")
def mixed():
    return _csv(mixed_table(rows=300))


def test_roles_of_a_mixed_table(mixed):
    roles = features.column_roles(datasets.profile_of(mixed))
    assert {n: r.role for n, r in roles.items()} == {
        "id": "identifier", "date": "datetime", "name": "identifier", "x1": "numeric", "x2": "numeric",
        "colour": "categorical", "constant": "constant", "member": "boolean", "target": "categorical",
    }  # fmt: skip
    assert [n for n, r in roles.items() if not r.used] == ["id", "name", "constant"]


@pytest.mark.parametrize(
    ("values", "role"),
    [
        (["2012-01-31", "2013-02-28", None] * 10, "datetime"),
        (["31.01.2012", "28.02.2013"] * 10 + ["soon"], "datetime"),  # 20 of 21 parse: 95%
        (["31.01.2012", "28.02.2013"] * 9 + ["soon", "later"], "categorical"),  # 18 of 20: below 95%
        ([f"user{i}" for i in range(30)], "identifier"),
        ([f"v{i % 12}" for i in range(20)], "categorical"),  # 60% distinct, but only 12 values
        ([True, False, None] * 10, "boolean"),
        ([0, 1, 1] * 10, "boolean"),
        ([7.5] * 30, "constant"),
        ([None] * 30, "constant"),
        ([2012, 2013, 2014] * 10, "numeric"),
    ],
)
def test_role_of_a_column(values, role):
    frame = pd.DataFrame({"c": values})
    assert features.column_roles(datasets.profile_of(frame))["c"].role == role


def test_a_profile_from_before_date_counts_judges_dates_on_its_frequent_values(mixed):
    profile = datasets.profile_of(mixed)
    for entry in profile["columns"].values():
        entry.pop("dates", None)
    assert features.column_roles(profile)["date"].role == "datetime"


def test_the_choice_selects_and_records_why(mixed):
    chosen = features.select(mixed, "target", FeatureChoice.of(exclude=["x2"], roles={"x1": "categorical"}))
    assert chosen.used == {
        "date": "datetime",
        "x1": "categorical",
        "colour": "categorical",
        "member": "boolean",
    }
    assert chosen.left_out["x2"] == "excluded" and chosen.left_out["id"].startswith("identifier")
    named = features.select(mixed, "target", FeatureChoice.of(features=["name", "x1"]))
    assert named.used == {"name": "categorical", "x1": "numeric"}  # asked for by name: used
    assert named.left_out["colour"] == "not in features"


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        (FeatureChoice.of(exclude=["colur"]), "column 'colur' is not a feature column.*Did you mean 'colour'"),
        (FeatureChoice.of(features=["target"]), "'target' is not a feature column of the dataset \\(it is the target\\)"),
        (FeatureChoice.of(roles={"x1": "text"}), "role 'text' for column 'x1' is not one of numeric"),
        (FeatureChoice.of(roles={"colour": "numeric"}), "column 'colour' holds .* not numbers"),
        (FeatureChoice.of(features=["constant"], exclude=["constant"]), "no feature columns are left"),
    ],
)  # fmt: skip
def test_choice_errors(mixed, choice, message):
    with pytest.raises(TrainingError, match=message):
        features.select(mixed, "target", choice)


def test_parse_roles():
    assert features.parse_roles(["zip=categorical", " when = datetime"]) == {
        "zip": "categorical",
        "when": "datetime",
    }
    with pytest.raises(TrainingError, match="not COLUMN=ROLE"):
        features.parse_roles(["zip"])


def test_a_copy_of_the_target_is_reported_and_honest_features_are_not():
    frame = datasets.read_table(str(PENGUINS))
    frame["species_code"] = frame["species"].map({"Adelie": 0, "Chinstrap": 1, "Gentoo": 2})
    frame["species_text"] = frame["species"].str.upper()
    estimator = training.import_estimator("sklearn.linear_model.LogisticRegression", {"max_iter": 500})
    trained = training.train_and_evaluate(frame, "species", estimator, seed=0, test_size=0.25)
    leaks = [w for w in trained.warnings if "leakage" in w]
    assert len(leaks) == 2 and "'species_code'" in leaks[0] and "'species_text'" in leaks[1]
    honest = training.train_and_evaluate(
        frame, "species", estimator, seed=0, test_size=0.25,
        choice=FeatureChoice.of(exclude=["species_code", "species_text"]),
    )  # fmt: skip
    assert honest.warnings == []


def test_a_regression_leak_is_reported():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=400), "noise": rng.normal(size=400)})
    frame["y"] = frame["x"] * 3 + 1
    estimator = training.import_estimator("sklearn.linear_model.Ridge", {})
    trained = training.train_and_evaluate(frame, "y", estimator, seed=0, test_size=0.25)
    assert len(trained.warnings) == 1 and "'x' alone predicts 'y'" in trained.warnings[0]


def test_a_class_too_rare_for_the_test_split_is_reported():
    frame = datasets.read_table(str(PENGUINS))
    frame.loc[frame.index[:3], "species"] = "Emperor"  # 3 rows: fewer than 2 of them held out
    estimator = training.import_estimator("sklearn.tree.DecisionTreeClassifier", {}, seed=0)
    trained = training.train_and_evaluate(frame, "species", estimator, seed=0, test_size=0.25)
    assert any("'Emperor'" in w and "fewer than 2 rows" in w for w in trained.warnings)
    assert data_checks.rare_test_classes(pd.Series(["a", "a", "b"]), pd.Series(["a", "a"])) == {"b": 0}


def test_task_classification_lets_a_classifier_take_a_continuous_target():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=300), "mpg": rng.integers(10, 110, 300)})
    estimator = training.import_estimator("sklearn.tree.DecisionTreeClassifier", {}, seed=0)
    with pytest.raises(TrainingError, match=r"looks continuous.*--task classification"):
        training.train_and_evaluate(frame, "mpg", estimator, seed=0, test_size=0.25)
    trained = training.train_and_evaluate(
        frame, "mpg", estimator, seed=0, test_size=0.25, task="classification"
    )
    assert trained.task == "classification"
    with pytest.raises(TrainingError, match="task 'regression' was asked for, but DecisionTreeClassifier"):
        training.train_and_evaluate(frame, "mpg", estimator, seed=0, test_size=0.25, task="regression")


def test_date_features_are_deterministic_and_take_strings_or_datetimes():
    from provenflow.modeling.preprocessing import DateFeatures

    text = pd.DataFrame({"d": ["2012/01/01", "2012/03/01", None, "garbage"]})
    parts = DateFeatures({"d": "%Y/%m/%d"}).fit(text).transform(text)
    assert parts[0].tolist() == [2012, 1, 6, 1, 15340]  # a Sunday, 15,340 days after 1970-01-01
    assert parts[1][:4].tolist() == [2012, 3, 3, 61]
    assert np.isnan(parts[2]).all() and np.isnan(parts[3]).all()
    typed = pd.DataFrame({"d": pd.to_datetime(["2012-01-01", None])})
    assert DateFeatures({"d": None}).fit(typed).transform(typed)[0].tolist() == parts[0].tolist()


@pytest.mark.parametrize(
    ("estimator", "sparse", "scaler"),
    [
        ("sklearn.linear_model.LogisticRegression", True, "StandardScaler"),  # wide one-hot stays sparse
        ("sklearn.ensemble.HistGradientBoostingClassifier", False, "StandardScaler"),
        ("sklearn.naive_bayes.GaussianNB", False, "StandardScaler"),  # takes no sparse input
        ("sklearn.naive_bayes.MultinomialNB", True, "MinMaxScaler"),  # takes no negative input
    ],
)
def test_the_preprocessing_follows_the_estimator(estimator, sparse, scaler):
    import scipy.sparse

    from provenflow.modeling.preprocessing import build_pipeline

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"shop": [f"shop {i}" for i in rng.integers(0, 300, 3000)], "x": rng.normal(size=3000)}
    )
    selection = features.select(frame.assign(y=0), "y", FeatureChoice())
    assert selection.used == {"shop": "categorical", "x": "numeric"}
    model = training.import_estimator(estimator, {})
    pipeline = build_pipeline(frame, selection, model)
    prepared = pipeline.named_steps["prepare"].fit_transform(frame)
    assert scipy.sparse.issparse(prepared) is sparse
    assert type(pipeline.named_steps["prepare"].transformers[-1][1].named_steps["scale"]).__name__ == scaler
    if "HistGradientBoosting" in estimator:
        assert prepared.shape == (3000, 2) and model.categorical_features == [0]
    else:
        assert prepared.shape[1] == 301


def test_a_datetime_column_from_parquet_trains_and_takes_strings():
    rng = np.random.default_rng(0)
    when = pd.to_datetime("2015-01-01") + pd.to_timedelta(rng.integers(0, 700, 300), unit="D")
    frame = pd.DataFrame({"when": when, "x": rng.normal(size=300)})
    frame["y"] = np.where(frame["when"].dt.month > 6, "late", "early")
    frame = pd.read_parquet(io.BytesIO(datasets.to_parquet_bytes(frame)))
    estimator = training.import_estimator("sklearn.tree.DecisionTreeClassifier", {}, seed=0)
    trained = training.train_and_evaluate(frame, "y", estimator, seed=0, test_size=0.25)
    assert trained.signature["inputs"][0] == {
        "name": "when", "dtype": str(frame["when"].dtype), "kind": "datetime", "role": "datetime", "format": None,
    }  # fmt: skip
    assert trained.metrics["accuracy"] > 0.95
    served = pd.DataFrame({"when": ["2016-08-01", "2016-02-01"], "x": [0.0, 0.0]})
    assert trained.pipeline.predict(served).tolist() == ["late", "early"]


@pytest.mark.parametrize(
    ("name", "values", "role"),
    [
        ("customer_id", [7 * i + 3 for i in range(60)], "identifier"),  # named like a key
        ("orderId", list(range(1000, 1060)), "identifier"),
        (
            "identifier",
            [5, 9, 2, 40, 33, 8, 71, 12, 64, 23, 90, 17, 55, 31, 77, 48, 26, 99, 3, 11, 42],
            "identifier",
        ),
        ("c", list(range(60))[::-1], "identifier"),  # every number from 0 to 59 once: a row number
        ("c", list(range(30)), "numeric"),  # too few rows to tell a row number from a measurement
        ("paid", [7 * i + 3 for i in range(60)], "numeric"),  # ends in "id", is not a key
        ("age", [18 + i % 50 for i in range(60)], "numeric"),  # a dense range, but with repeats
        ("customer_id", [1, 2, 3] * 20, "numeric"),  # few distinct values: a code, not a key
    ],
)
def test_whole_number_keys_and_row_numbers_are_identifiers(name, values, role):
    frame = pd.DataFrame({name: values})
    found = features.column_roles(datasets.profile_of(frame))[name]
    assert found.role == role, found.why if hasattr(found, "why") else found


def test_an_identifier_can_still_be_used_as_a_number_when_asked():
    frame = pd.DataFrame(
        {"store_id": [7 * i + 3 for i in range(60)], "x": [0.5, 1.5, 2.5] * 20, "y": ["a", "b"] * 30}
    )
    profile = datasets.profile_of(frame)
    assert (
        features.select(frame, "y", FeatureChoice.of(), profile).left_out["store_id"].startswith("identifier")
    )
    chosen = features.select(frame, "y", FeatureChoice.of(roles={"store_id": "numeric"}), profile)
    assert chosen.used == {"store_id": "numeric", "x": "numeric"}


# DateFeatures({"at": "%Y-%m-%d %H:%M:%S"}) fitted on one column and pickled by the code before
# time-of-day features existed: stored models hold exactly such bytes.
_OLD_DATE_FEATURES = (
    "gAWVHwEAAAAAAACMGHByb3ZlbmZsb3cucHJlcHJvY2Vzc2luZ5SMDERhdGVGZWF0dXJlc5STlCmBlH2UKIwHZm9ybWF0c5R9lIwCYXSU"
    "jBElWS0lbS0lZCAlSDolTTolU5RzjAhjb2x1bW5zX5RdlIwCYXSUYYwObl9mZWF0dXJlc19pbl+USwGMEWZlYXR1cmVfbmFtZXNfaW5f"
    "lIwWbnVtcHkuX2NvcmUubXVsdGlhcnJheZSMDF9yZWNvbnN0cnVjdJSTlIwFbnVtcHmUjAduZGFycmF5lJOUSwCFlEMBYpSHlFKUKEsB"
    "SwGFlGgRjAVkdHlwZZSTlIwCTziUiYiHlFKUKEsDjAF8lE5OTkr/////Sv////9LP3SUYoldlGgLYXSUYnViLg=="
)


def test_a_timestamp_column_gives_the_hour_and_minute_and_old_models_keep_their_features():
    import base64
    import pickle

    from provenflow.modeling.preprocessing import DateFeatures

    frame = pd.DataFrame({"at": ["2026-01-01 13:30:00", "2026-01-02 08:15:00"]})
    old = pickle.loads(base64.b64decode(_OLD_DATE_FEATURES))
    assert old.transform(frame).shape == (2, 5)  # as trained: no hour
    assert pickle.dumps(old, protocol=5) == base64.b64decode(_OLD_DATE_FEATURES)  # the same bytes again
    plain = DateFeatures({"at": "%Y-%m-%d %H:%M:%S"}).fit(frame)
    assert pickle.dumps(plain, protocol=5) == base64.b64decode(_OLD_DATE_FEATURES)  # date-only: as before
    timed = DateFeatures({"at": "%Y-%m-%d %H:%M:%S"}, {"at": ["hour", "minute"]}).fit(frame)
    assert timed.transform(frame)[:, 5:].tolist() == [[13, 30], [8, 15]]
    assert list(timed.get_feature_names_out())[-2:] == ["at_hour", "at_minute"]


def test_a_daily_cycle_is_learnt_from_the_raw_timestamp():
    rng = np.random.default_rng(0)
    at = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 60 * 24 * 30, 2000), "min")
    hour = at.hour.to_numpy()
    frame = pd.DataFrame(
        {"at": at.strftime("%Y-%m-%d %H:%M:%S"), "load": np.where((hour >= 8) & (hour < 18), 10.0, 1.0)}
    )
    tree = training.import_estimator("sklearn.tree.DecisionTreeRegressor", {}, seed=0)
    trained = training.train_and_evaluate(frame, "load", tree, seed=0, test_size=0.25)
    names = list(trained.pipeline.named_steps["prepare"].get_feature_names_out())
    assert "datetime__at_hour" in names and "datetime__at_minute" in names
    # Without the hour a tree reaches r2 0.92 here, from the fractional elapsed days alone (measured).
    assert trained.metrics["r2"] > 0.99
    raw = pd.DataFrame({"at": ["2026-03-01 09:00:00", "2026-03-01 23:00:00"]})
    assert trained.pipeline.predict(raw).tolist() == [10.0, 1.0]
    dates_only = pd.DataFrame({"at": at.strftime("%Y-%m-%d"), "load": frame["load"]})
    tree = training.import_estimator("sklearn.tree.DecisionTreeRegressor", {}, seed=0)
    plain = training.train_and_evaluate(dates_only, "load", tree, seed=0, test_size=0.25)
    assert "datetime__at_hour" not in list(plain.pipeline.named_steps["prepare"].get_feature_names_out())


@pytest.mark.parametrize("order", ["shuffled", "sorted by time"])
def test_day_first_dates_are_dates_whatever_the_first_rows_say(order):
    """18/11/2026 16:33 is day first; pandas guesses 06/10/2026 as month first. A log sorted by time
    starts with days ≤ 12 only. Both were taken for an identifier and left out of the model."""
    from provenflow.data.dates import count_dates, date_format, format_sample

    rng = np.random.default_rng(3)
    at = pd.Timestamp("2026-10-01") + pd.to_timedelta(rng.integers(0, 60 * 24 * 60, 2000), "min")
    if order == "sorted by time":
        at = at.sort_values()
    hour = at.hour.to_numpy()
    frame = pd.DataFrame({"when": at.strftime("%d/%m/%Y %H:%M"), "load": np.where((hour >= 8) & (hour < 18), 10.0, 1.0)})
    assert date_format(format_sample(frame["when"])) == "%d/%m/%Y %H:%M"
    assert count_dates(frame["when"]) == len(frame)
    assert date_format(["11/18/2026", "01/02/2026"]) == "%m/%d/%Y"  # month first stays month first
    tree = training.import_estimator("sklearn.tree.DecisionTreeRegressor", {}, seed=0)
    trained = training.train_and_evaluate(frame, "load", tree, seed=0, test_size=0.25)
    assert "datetime__when_hour" in list(trained.pipeline.named_steps["prepare"].get_feature_names_out())
    assert trained.metrics["r2"] > 0.99


def test_the_leakage_check_scores_label_codes_as_it_scores_the_labels():
    """The check fits and scores on integer codes of the labels (scikit-learn's target checks sorted
    the text labels on every one-column fit: 80 ms → 29 ms on 5k rows × 8 columns); each column's
    score is the one the labels themselves give, ties in a leaf included (codes keep the labels' order)."""
    rng = np.random.default_rng(1)
    penguins = datasets.read_table(str(PENGUINS))
    ties = pd.DataFrame({"a": rng.integers(0, 3, 400), "b": rng.choice(["x", "y"], 400),
                         "y": rng.choice(["c", "a", "b"], 400)})  # fmt: skip
    for frame, target in ((penguins, "species"), (penguins, "island"), (ties, "y")):
        for seed in (0, 1):
            x_train, x_test, y_train, y_test = training.split_rows(frame, target, "classification", seed, 0.25)
            codes = data_checks.sorted_codes(y_train, y_test)
            codes_train, codes_test = pd.Series(codes[0], index=y_train.index), pd.Series(codes[1], index=y_test.index)
            assert codes_train.dtype.kind == "i"
            for column in x_train.columns:
                coded = data_checks._one_feature_score(x_train[column], codes_train, x_test[column], codes_test,
                                                       "classification")  # fmt: skip
                plain = data_checks._one_feature_score(x_train[column], y_train, x_test[column], y_test,
                                                       "classification")  # fmt: skip
                assert coded == plain, (target, seed, column)
