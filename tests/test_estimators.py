"""Every scikit-learn classifier and regressor, with default parameters, trains on the bundled demo
data and on a table with dates, identifiers and missing values (issue 10). The fits run in the core,
without Prefect."""

from __future__ import annotations

import io
import time
import warnings

import pandas as pd
import pytest
from sklearn.utils import all_estimators

from provenflow.data.datasets import read_table
from provenflow.modeling import training
from tests.conftest import PENGUINS
from tests.mixed_table import mixed_table

# Estimators that cannot be built or fitted with default parameters on one single-output target,
# each with its reason. Everything else in all_estimators must train.
SKIPPED = {
    "ClassifierChain": "needs an estimator argument and a multi-label target",
    "RegressorChain": "needs an estimator argument and a multi-output target",
    "MultiOutputClassifier": "needs an estimator argument and a multi-output target",
    "MultiOutputRegressor": "needs an estimator argument and a multi-output target",
    "OneVsOneClassifier": "needs an estimator argument",
    "OneVsRestClassifier": "needs an estimator argument",
    "OutputCodeClassifier": "needs an estimator argument",
    "FixedThresholdClassifier": "needs an estimator argument",
    "TunedThresholdClassifierCV": "needs an estimator argument",
    "SelfTrainingClassifier": "needs an estimator argument",
    "StackingClassifier": "needs an estimators list",
    "StackingRegressor": "needs an estimators list",
    "VotingClassifier": "needs an estimators list",
    "VotingRegressor": "needs an estimators list",
    "MultiTaskElasticNet": "needs a 2-D (multi-task) target",
    "MultiTaskElasticNetCV": "needs a 2-D (multi-task) target",
    "MultiTaskLasso": "needs a 2-D (multi-task) target",
    "MultiTaskLassoCV": "needs a 2-D (multi-task) target",
    "IsotonicRegression": "takes a single feature column",
    "CCA": "n_components=2 needs a target with 2 or more columns",
    "PLSCanonical": "n_components=2 needs a target with 2 or more columns",
    "CategoricalNB": "needs every feature as non-negative integer category codes",
    "QuadraticDiscriminantAnalysis": "reg_param=0 needs each class's covariance to be of full rank; a "
    "category that never varies within a class (every Gentoo penguin lives on Biscoe) makes it singular "
    "(its error says to raise reg_param)",
    "RadiusNeighborsClassifier": "radius=1.0 leaves held-out rows without a neighbour; needs a radius "
    "chosen for the data, or outlier_label",
    "RadiusNeighborsRegressor": "radius=1.0 leaves held-out rows without a neighbour (their prediction is "
    "NaN); needs a radius chosen for the data",
}
# On the mixed table only: its classes are uneven (the smallest has ~5% of the rows).
SKIPPED_ON_MIXED = {
    "NuSVC": "nu=0.5 is infeasible when two classes together have fewer than half the rows",
}

ESTIMATORS = sorted(
    {name: cls for name, cls in all_estimators(type_filter=["classifier", "regressor"])}.items()
)


def _estimator(name, cls, skipped=SKIPPED):
    if name in skipped:
        pytest.skip(skipped[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated estimators still train
        estimator = cls()
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=0)
    return estimator


@pytest.fixture(scope="module")
def penguins():
    return read_table(str(PENGUINS))


def _as_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """The table the way a data run reads it back from a CSV file."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)))


@pytest.fixture(scope="module")
def mixed():
    return {task: _as_csv(mixed_table(task=task)) for task in ("classification", "regression")}


def _fit(frame, target, estimator):
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and the like: not what this test is about
        trained = training.train_and_evaluate(frame, target, estimator, seed=0, test_size=0.25)
    return trained, time.perf_counter() - started


@pytest.mark.parametrize(("name", "cls"), ESTIMATORS, ids=[n for n, _ in ESTIMATORS])
def test_trains_on_demo_data(name, cls, penguins):
    estimator = _estimator(name, cls)
    target = "species" if training.task_of(estimator) == "classification" else "body_mass_g"
    trained, _ = _fit(penguins, target, estimator)
    assert trained.test_rows > 0 and trained.metrics


@pytest.mark.parametrize(("name", "cls"), ESTIMATORS, ids=[n for n, _ in ESTIMATORS])
def test_trains_on_mixed_table(name, cls, mixed):
    estimator = _estimator(name, cls, {**SKIPPED, **SKIPPED_ON_MIXED})
    task = training.task_of(estimator)
    frame = mixed[task]
    trained, _ = _fit(frame, "target", estimator)
    assert trained.unlabelled_rows == int(frame["target"].isna().sum()) > 0
    assert trained.train_rows + trained.test_rows == len(frame) - trained.unlabelled_rows
    assert [i["name"] for i in trained.signature["inputs"]] == ["date", "x1", "x2", "colour", "member"]
    assert set(trained.signature["left_out"]) == {"id", "name", "constant"}
    # The served model takes the raw date string.
    row = frame.drop(columns="target").head(3)
    assert len(trained.pipeline.predict(row)) == 3
