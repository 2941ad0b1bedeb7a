import numpy as np
import pandas as pd
import pytest

from provenflow.data.datasets import read_table
from provenflow.digest import Digest
from provenflow.errors import IntegrityError, SignatureError, TrainingError
from provenflow.modeling import training
from provenflow.modeling.signing import ModelIdentity, SigningKey, seal
from tests.conftest import PENGUINS

KEY = SigningKey(bytes(range(32)), "a test key")


@pytest.fixture(scope="module")
def frame():
    return read_table(str(PENGUINS))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("n=10", ("n", 10)), ("a=0.5", ("a", 0.5)), ("k=gini", ("k", "gini")), ("x=None", ("x", None)),
     ("b=True", ("b", True)), ("l=[1,2]", ("l", [1, 2]))],
)  # fmt: skip
def test_parse_param(text, expected):
    assert training.parse_param(text) == expected


def test_parse_param_needs_equals():
    with pytest.raises(TrainingError, match="not key=value"):
        training.parse_param("n_estimators")


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("sklearn.ensemble.RandomForestClasifier", {}, "Did you mean 'RandomForestClassifier'"),
        ("sklearn.no_such_module.Model", {}, "cannot import module 'sklearn.no_such_module'"),
        ("sklearn.utils.Bunch", {}, "not a scikit-learn estimator"),
        ("collections.OrderedDict", {}, "not in the allowed estimator modules"),
        ("RandomForest", {}, "not an import path"),
        (
            "sklearn.ensemble.RandomForestClassifier",
            {"n_estimator": 5},
            "no hyper-parameter 'n_estimator'.*Did you mean 'n_estimators'",
        ),
    ],
)
def test_estimator_errors(path, params, message):
    with pytest.raises(TrainingError, match=message):
        training.import_estimator(path, params)


def test_explicit_random_state_none_stays_unseeded():
    seeded = training.import_estimator("sklearn.ensemble.RandomForestClassifier", {}, seed=5)
    unseeded = training.import_estimator(
        "sklearn.ensemble.RandomForestClassifier", {"random_state": None}, seed=5
    )
    assert seeded.random_state == 5 and unseeded.random_state is None


def test_rejected_hyper_parameter_value(frame):
    estimator = training.import_estimator("sklearn.ensemble.RandomForestClassifier", {"n_estimators": -3})
    with pytest.raises(TrainingError, match=r"rejected its hyper-parameters.*n_estimators"):
        training.train_and_evaluate(frame, "species", estimator, seed=1, test_size=0.25)


def test_unknown_target(frame):
    estimator = training.import_estimator("sklearn.linear_model.LogisticRegression", {})
    with pytest.raises(
        TrainingError, match=r"target column 'specis' is not in the dataset. Did you mean 'species'"
    ):
        training.train_and_evaluate(frame, "specis", estimator, seed=1, test_size=0.25)


def test_classification_with_missing_values_and_categories(frame):
    estimator = training.import_estimator(
        "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 20}, seed=3
    )
    trained = training.train_and_evaluate(frame, "sex", estimator, seed=3, test_size=0.25)
    assert trained.task == "classification"
    assert set(trained.metrics) == {"accuracy", "f1", "roc_auc"}
    assert 0.6 < trained.metrics["accuracy"] <= 1.0
    assert trained.params["random_state"] == 3  # the seed reaches the estimator
    assert trained.train_rows + trained.test_rows == 333  # rows with a missing target are dropped
    names = [c["name"] for c in trained.signature["inputs"]]
    assert "sex" not in names and "island" in names
    assert trained.signature["classes"] == ["female", "male"]


def test_regression_metrics(frame):
    estimator = training.import_estimator("sklearn.linear_model.Ridge", {"alpha": 1.0})
    trained = training.train_and_evaluate(frame, "body_mass_g", estimator, seed=0, test_size=0.3)
    assert trained.task == "regression"
    assert set(trained.metrics) == {"rmse", "mae", "r2"}
    assert trained.metrics["r2"] > 0.7 and trained.metrics["rmse"] > 0


def test_same_seed_and_data_serialize_identically(frame):
    def fit():
        estimator = training.import_estimator(
            "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 15}, seed=11
        )
        return training.serialize(
            training.train_and_evaluate(frame, "species", estimator, seed=11, test_size=0.2).pipeline
        )

    first, second = fit(), fit()
    assert Digest.of_bytes(first) == Digest.of_bytes(second)
    identity = ModelIdentity("m", 1, Digest.of_bytes(first).hex, training.MODEL_FORMAT)
    model = training.deserialize(first, identity, seal(identity, KEY), KEY)
    assert list(model.predict(frame.drop(columns=["species"]).head(3)))


def test_tampered_model_bytes_are_not_unpickled():
    data = training.serialize({"weights": [1, 2, 3]})
    identity = ModelIdentity("m", 1, Digest.of_bytes(data).hex, training.MODEL_FORMAT)
    with pytest.raises(IntegrityError, match="refusing to load"):
        training.deserialize(data + b"x", identity, seal(identity, KEY), KEY)


def test_unsealed_model_bytes_are_not_unpickled():
    data = training.serialize({"weights": [1, 2, 3]})
    identity = ModelIdentity("m", 1, Digest.of_bytes(data).hex, training.MODEL_FORMAT)
    other = ModelIdentity("m", 2, identity.hash, identity.format)
    with pytest.raises(SignatureError, match="no seal"):
        training.deserialize(data, identity, None, KEY)
    with pytest.raises(SignatureError, match="does not match"):
        training.deserialize(data, identity, seal(other, KEY), KEY)


def test_single_class_target():
    frame = pd.DataFrame({"x": range(10), "y": ["a"] * 10})
    estimator = training.import_estimator("sklearn.linear_model.LogisticRegression", {})
    with pytest.raises(TrainingError, match="single class"):
        training.train_and_evaluate(frame, "y", estimator, seed=0, test_size=0.3)


_RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("labels", "continuous"),
    [
        (pd.Series(np.arange(1000) % 10), False),  # digits 0..9
        (pd.Series(np.arange(30) % 10), False),  # 10 classes, few rows each
        (pd.Series([0.0, 1.0, np.nan] * 50), False),  # 0/1 read as float because of a blank
        (pd.Series([True, False] * 50), False),
        (pd.Series([f"name{i}" for i in range(300)]), False),  # text is always classes
        (pd.Series(np.arange(1, 11) / 2).repeat(50), False),  # half-star ratings, 10 values
        (pd.Series(np.arange(100_000) % 100), False),  # 100 class ids, 1,000 rows each
        (pd.Series(np.arange(20)), False),  # up to 20 classes always pass, however few rows
        (pd.Series(np.arange(21)), True),  # 21 integer values of one row each: a count or an id
        (pd.Series(np.round(_RNG.normal(50, 10, 333), 1)), True),  # a measurement
        (pd.Series(np.arange(300) % 100), True),  # 100 integer values, 3 rows each
        (pd.Series(np.arange(100_000) % 25 + 0.5), True),  # 25 values that are not whole numbers
    ],
)
def test_looks_continuous(labels, continuous):
    assert training.looks_continuous(labels) is continuous


def test_penguin_body_mass_looks_continuous(frame):
    assert training.looks_continuous(frame["body_mass_g"])
    assert not training.looks_continuous(frame["species"])
    assert not training.looks_continuous(frame["year"])


def test_classifier_on_a_continuous_target_is_refused(frame):
    estimator = training.import_estimator("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 5})
    with pytest.raises(
        TrainingError,
        match=r"target 'body_mass_g' looks continuous \(94 distinct numeric values over 342 rows\).*"
        r"sklearn.ensemble.RandomForestRegressor.*bin",
    ) as caught:
        training.train_and_evaluate(frame, "body_mass_g", estimator, seed=0, test_size=0.25)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("task", [None, "classification"])
def test_classifier_on_a_few_fractional_values_gets_a_clear_error(frame, task):
    """Four distinct values do not look continuous, but 0.5 is no class sklearn takes (it said
    'Unknown label type: continuous'), even when the user says the numbers are classes."""
    frame = frame.assign(grade=frame["flipper_length_mm"].gt(200).map({True: 1.5, False: 0.5}))
    frame.loc[frame.index[::7], "grade"] = 2.0
    estimator = training.import_estimator("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 5})
    with pytest.raises(TrainingError, match=r"target 'grade' has fractional values \(0.5, 1.5, …\).*regressor"):
        training.train_and_evaluate(frame, "grade", estimator, seed=0, test_size=0.25, task=task)


def test_regressor_on_a_text_target_is_refused(frame):
    estimator = training.import_estimator("sklearn.linear_model.Ridge", {})
    with pytest.raises(
        TrainingError,
        match=r"target 'species' is not numeric \('Adelie', .*regressor needs numbers.*RandomForestClassifier",
    ) as caught:
        training.train_and_evaluate(frame, "species", estimator, seed=0, test_size=0.25)
    assert "\n" not in str(caught.value)


HOSTILE = """\
from pathlib import Path

Path({marker!r}).write_text("top-level code ran")


class Model:
    def fit(self, x, y):
        return self

    def get_params(self, deep=True):
        return {{}}
"""


@pytest.mark.parametrize("path", ["hostile.Model", "hostile.sub.Model"])
def test_estimator_outside_the_allow_list_is_refused_before_import(tmp_path, monkeypatch, path):
    marker = tmp_path / "marker"
    (tmp_path / "hostile").mkdir()
    (tmp_path / "hostile" / "__init__.py").write_text(HOSTILE.format(marker=str(marker)))
    (tmp_path / "hostile" / "sub.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TrainingError, match=r"not in the allowed estimator modules") as caught:
        training.import_estimator(path, {})
    message = str(caught.value)
    assert "PROVENFLOW_ESTIMATOR_MODULES=sklearn,xgboost,lightgbm,hostile" in message
    assert "\n" not in message
    assert not marker.exists(), "the module's top-level code ran"


@pytest.mark.parametrize(
    ("path", "allowed", "ok"),
    [
        ("sklearn.linear_model.Ridge", ("sklearn",), True),
        ("sklearnx.Model", ("sklearn",), False),  # a prefix is a whole package name, not a string prefix
        ("mypkg.models.Model", ("sklearn", "mypkg"), True),
        ("mypkg.models.Model", ("mypkg.models",), True),
        ("mypkg.other.Model", ("mypkg.models",), False),
        ("sklearn..os.Model", ("sklearn",), False),
        (".sklearn.Model", ("sklearn",), False),
    ],
)
def test_estimator_module_allowed(path, allowed, ok):
    assert training.estimator_module_allowed(path.rpartition(".")[0], allowed) is ok


def test_estimator_modules_come_from_settings(tmp_path, monkeypatch):
    from provenflow.settings import get_settings

    (tmp_path / "ownmodel.py").write_text(
        "from sklearn.linear_model import Ridge\n\nclass Model(Ridge):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PROVENFLOW_ESTIMATOR_MODULES", "sklearn, ownmodel")
    get_settings.cache_clear()
    try:
        assert get_settings().estimator_modules == ("sklearn", "ownmodel")
        assert type(training.import_estimator("ownmodel.Model", {})).__name__ == "Model"
    finally:
        get_settings.cache_clear()


def test_the_data_checks_run_while_the_model_fits(frame, monkeypatch):
    """A model run's leakage checks depend on the rows, not on the fit: they run beside it (a refit
    of a sweep's best trial paid them after its fit, 0.1-0.2 s of a 5k-row sweep). The fit and the
    check meet at a barrier: run one after the other, the first to arrive waits alone and fails."""
    import threading

    from sklearn.tree import DecisionTreeClassifier

    from provenflow.data import data_checks

    meet = threading.Barrier(2, timeout=30)

    class MeetingTree(DecisionTreeClassifier):
        def fit(self, X, y, **kw):
            meet.wait()
            return super().fit(X, y, **kw)

    checked_in = []
    leaky = data_checks.leaky_features

    def meeting_leaky(*args, **kw):
        checked_in.append(threading.current_thread())
        meet.wait()
        return leaky(*args, **kw)

    monkeypatch.setattr(data_checks, "leaky_features", meeting_leaky)
    labelled = frame.dropna(subset=["species"]).assign(species_code=lambda f: f["species"].map(
        {"Adelie": 0, "Chinstrap": 1, "Gentoo": 2}))  # fmt: skip
    trained = training.train_and_evaluate(labelled, "species", MeetingTree(random_state=0), 0, 0.25)
    assert checked_in and checked_in[0] is not threading.current_thread()
    assert any("'species_code' alone predicts" in w for w in trained.warnings)  # still found and reported


@pytest.mark.parametrize("target", ["species", "sex"])
@pytest.mark.parametrize("estimator", ["sklearn.ensemble.RandomForestClassifier", "sklearn.linear_model.LogisticRegression"])
def test_scores_from_label_codes_are_the_scores_of_the_labels(frame, monkeypatch, target, estimator):
    """evaluate scores integer codes of the labels (each metric's checks sorted the text labels again:
    ~25% of a cross-validation fold's scoring); every metric is the one the labels give, to the bit,
    with a class the model never saw among the scored rows too."""
    from provenflow.data import features
    from provenflow.modeling.preprocessing import build_pipeline

    rows = frame.dropna(subset=[target])
    x_train, x_test, y_train, y_test = training.split_rows(rows, target, "classification", 0, 0.25)
    model = training.import_estimator(estimator, {"max_iter": 500} if "Logistic" in estimator else {}, seed=0)
    pipeline = build_pipeline(x_train, features.select(rows, target, features.FeatureChoice(), None), model)
    pipeline.fit(x_train, y_train)
    unseen = y_test.copy()
    unseen.iloc[:3] = "Emperor"
    def scores(labels):
        try:
            return training.evaluate(pipeline, x_test, labels, "classification")
        except ValueError as exc:  # a binary F1 over three labels: refused the same way
            return str(exc)

    for labels in (y_test, unseen):
        coded = scores(labels)
        with monkeypatch.context() as patch:
            patch.setattr(training, "sorted_codes", lambda *parts: None)  # the labels as they are
            assert coded == scores(labels)
    assert set(scores(y_test)) >= {"accuracy", "f1", "roc_auc"}
