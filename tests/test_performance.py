"""Realized performance: the same numbers as scikit-learn, honest intervals, and the policy's verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from provenflow.monitoring.performance import PerformanceError, PerformancePolicy, assess, markdown, realized

UNTIL = datetime(2026, 11, 29, 12, tzinfo=UTC)


def classified(
    n: int, accuracy: float, classes=("a", "b", "c"), seed: int = 0, start=UNTIL - timedelta(hours=1)
):
    """Logged predictions with probabilities, and labels that agree with them at ``accuracy``."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    proba = rng.dirichlet(np.ones(k), size=n)
    predicted = np.array(classes)[proba.argmax(axis=1)]
    right = rng.random(n) < accuracy
    other = np.array(classes)[(proba.argmax(axis=1) + rng.integers(1, k, size=n)) % k]
    labels = np.where(right, predicted, other)
    frame = pd.DataFrame({"request_id": [f"r{i}" for i in range(n)], "row": 0, "prediction": predicted,
                          "time": pd.Timestamp(start) + pd.to_timedelta(rng.random(n) * 50, unit="m")})  # fmt: skip
    for i, c in enumerate(classes):
        frame[f"proba_{c}"] = proba[:, i]
    return frame, pd.DataFrame({"request_id": frame["request_id"], "row": 0, "label": labels})


@pytest.mark.parametrize("classes", [("a", "b", "c"), ("no", "yes")])
def test_classification_scores_equal_scikit_learns(classes):
    frame, labels = classified(600, 0.7, classes)
    labels.loc[:4, "label"] = "a-new-class"  # a class the model never learnt counts as wrong
    joined = frame.merge(labels, on=["request_id", "row"])
    got = realized(joined, "classification", list(classes), resamples=10)
    y, p = joined["label"], joined["prediction"]
    assert got["accuracy"].value == pytest.approx(skm.accuracy_score(y, p))
    # Binary: the last class's F1 (scikit-learn's average="binary" refuses a third label value, so ask it per class).
    f1 = (
        skm.f1_score(y, p, labels=[classes[-1]], average="macro")
        if len(classes) == 2
        else skm.f1_score(y, p, average="macro")
    )
    assert got["f1"].value == pytest.approx(f1)
    assert "roc_auc" not in got  # a label outside the classes: scikit-learn cannot score it either
    clean = joined.iloc[5:]
    got = realized(clean, "classification", list(classes), resamples=10)
    proba = clean[[f"proba_{c}" for c in classes]].to_numpy()
    auc = (skm.roc_auc_score(clean["label"], proba[:, 1]) if len(classes) == 2
           else skm.roc_auc_score(clean["label"], proba, multi_class="ovr", average="macro", labels=list(classes)))  # fmt: skip
    assert got["roc_auc"].value == pytest.approx(auc)
    # Many ties (probabilities rounded to one decimal): ties count half, as in scikit-learn.
    tied = clean.assign(**{f"proba_{c}": clean[f"proba_{c}"].round(1) for c in classes})
    proba = tied[[f"proba_{c}" for c in classes]].to_numpy()
    auc = (skm.roc_auc_score(tied["label"], proba[:, 1]) if len(classes) == 2
           else np.mean([skm.roc_auc_score(tied["label"] == c, proba[:, i]) for i, c in enumerate(classes)]))  # fmt: skip
    assert realized(tied, "classification", list(classes), resamples=0)["roc_auc"].value == pytest.approx(auc)


def test_regression_scores_equal_scikit_learns():
    rng = np.random.default_rng(1)
    y = rng.normal(4000, 800, 300)
    joined = pd.DataFrame({"label": y, "prediction": y + rng.normal(0, 300, 300)})
    got = realized(joined, "regression", None, resamples=10)
    assert got["rmse"].value == pytest.approx(np.sqrt(skm.mean_squared_error(y, joined["prediction"])))
    assert got["mae"].value == pytest.approx(skm.mean_absolute_error(y, joined["prediction"]))
    assert got["r2"].value == pytest.approx(skm.r2_score(y, joined["prediction"]))


def test_the_interval_covers_the_truth_and_narrows_with_more_rows():
    """A 95 % interval should hold the true accuracy in most of 40 independent samples, and shrink ~1/sqrt(n)."""
    accuracy = frozenset({"accuracy"})
    covered, widths = 0, []
    for seed in range(40):
        frame, labels = classified(300, 0.8, seed=seed)
        joined = frame.merge(labels, on=["request_id", "row"])
        a = realized(joined, "classification", ["a", "b", "c"], resamples=300, intervals=accuracy)["accuracy"]
        covered += a.low <= 0.8 <= a.high
        widths.append(a.high - a.low)
    # 95 % nominal: a broken interval (too narrow, or off-centre) falls far below 33 of 40.
    assert covered >= 33, covered
    big, labels = classified(4800, 0.8, seed=99)
    joined = big.merge(labels, on=["request_id", "row"])
    a = realized(joined, "classification", ["a", "b", "c"], resamples=300, intervals=accuracy)["accuracy"]
    assert a.high - a.low < np.mean(widths) / 2.5  # 16x the rows: a quarter of the width


def test_verdicts_decayed_ok_and_not_enough_labels():
    policy = PerformancePolicy(metric="accuracy", allowed_drop=0.05, min_labelled_rows=200,
                               window=timedelta(hours=1), windows=3, resamples=100)  # fmt: skip
    training = {"accuracy": 0.9, "f1": 0.88}
    # The newest window (labels not in yet) has 50 labelled rows; the one before, 400 at 70 %.
    old, old_labels = classified(400, 0.7, seed=2, start=UNTIL - timedelta(hours=2))
    new, new_labels = classified(300, 0.95, seed=3)
    new["request_id"] = "n" + new["request_id"]
    new_labels["request_id"] = "n" + new_labels["request_id"]
    predictions = pd.concat([old, new], ignore_index=True)
    labels = pd.concat([old_labels, new_labels.head(50)], ignore_index=True)
    result = assess(predictions, labels, training, "classification", ["a", "b", "c"], policy, UNTIL)
    assert result.verdict == "degraded" and result.decided == 1 and result.judged.labelled == 400
    assert result.windows[2].labelled == 50 and result.windows[2].predictions == 300
    assert result.windows[0].predictions == 0 and result.windows[0].metrics == {}
    text = markdown(
        "m@1",
        result,
        estimates=[None, {"accuracy": 0.71}, {"accuracy": 0.93, "accuracy_low": 0.9, "accuracy_high": 0.95}],
    )
    assert (
        "estimated accuracy" in text
        and "0.7100" in text
        and "0.9300 (0.9000–0.9500)" in text
        and "degraded" in text
    )

    ok_preds, ok_labels = classified(400, 0.9, seed=5, start=UNTIL - timedelta(hours=2))
    fine = assess(ok_preds, ok_labels, training, "classification", ["a", "b", "c"], policy, UNTIL)
    assert fine.verdict == "ok" and not fine.degraded and "estimated" not in markdown("m@1", fine)

    few = assess(predictions, labels.head(100), training, "classification", ["a", "b", "c"], policy, UNTIL)
    assert few.verdict == "not enough labels" and few.decided is None
    assert "200 labelled rows" in few.reason


def test_lower_is_better_and_policy_errors():
    rng = np.random.default_rng(5)
    y = rng.normal(10, 2, 300)
    predictions = pd.DataFrame({"request_id": [f"r{i}" for i in range(300)], "row": 0, "prediction": y + rng.normal(0, 1.5, 300),
                                "time": pd.Timestamp(UNTIL - timedelta(minutes=30))})  # fmt: skip
    labels = pd.DataFrame({"request_id": predictions["request_id"], "row": 0, "label": y})
    policy = PerformancePolicy(metric="rmse", allowed_drop=0.2, min_labelled_rows=100, window=timedelta(hours=1),
                               windows=1, resamples=50)  # fmt: skip
    assert assess(predictions, labels, {"rmse": 1.0}, "regression", None, policy, UNTIL).verdict == "degraded"
    assert assess(predictions, labels, {"rmse": 1.5}, "regression", None, policy, UNTIL).verdict == "ok"
    with pytest.raises(PerformanceError, match="does not score a regression model"):
        assess(
            predictions,
            labels,
            {"rmse": 1.0},
            "regression",
            None,
            PerformancePolicy(metric="accuracy"),
            UNTIL,
        )
    with pytest.raises(PerformanceError, match=r"recorded no held-out 'roc_auc'.*accuracy, f1"):
        PerformancePolicy(metric="roc_auc").check("classification", {"accuracy": 0.9, "f1": 0.8})
