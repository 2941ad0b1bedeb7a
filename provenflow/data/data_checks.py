"""Checks on a model run's data that do not stop it but that its user must hear about.

Each returns plain messages; the run records them as warnings (``Run.warn``), and the CLI and the
run card show them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# A feature that alone scores this well on the held-out rows is a copy of the target, or computed
# from it (accuracy for classifiers, R² for regressors).
LEAK_SCORE = 0.99
# Rows per split the leakage check looks at: a one-feature model on 5,000 rows takes milliseconds.
LEAK_SAMPLE = 5000


def leaky_features(
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_test: pd.DataFrame,
    y_test: pd.Series,
    columns: list[str],
    task: str,
    seed: int = 0,
) -> dict[str, float]:
    """Columns that alone predict the held-out target almost perfectly, with their score.

    One tiny model per column, trained on (a sample of) the training rows and scored on the test
    rows: a lookup of the majority class (or mean) per value for text, a depth-4 tree (and, for
    regressors, a line) for numbers.
    Skipped when the target is itself that predictable (one class nearly everywhere)."""
    if len(y_test) == 0:
        return {}
    x_train, y_train = _sample(x_train, y_train, seed)
    x_test, y_test = _sample(x_test, y_test, seed)
    if task == "classification" and y_test.value_counts(normalize=True).iloc[0] >= LEAK_SCORE:
        return {}
    if task == "classification" and (codes := sorted_codes(y_train, y_test)) is not None:
        y_train, y_test = pd.Series(codes[0], index=y_train.index), pd.Series(codes[1], index=y_test.index)
    if task == "regression" and float(np.var(y_test.to_numpy(dtype="float64"))) == 0.0:
        return {}
    found = {}
    for column in columns:
        score = _one_feature_score(x_train[column], y_train, x_test[column], y_test, task)
        if score is not None and score >= LEAK_SCORE:
            found[column] = score
    return found


def sorted_codes(*parts: Any) -> list[np.ndarray] | None:
    """Class labels of PARTS as integer codes of one sorted order, the order a classifier's
    ``classes_`` takes (so a tied leaf or an argmax picks the same class and every metric binarizes
    the same way): scikit-learn's target checks sort an object array of text labels again on every
    fit and score (~60% of the leakage check, ~30% of a CV fold's scoring on 5k rows). None when
    the labels do not sort together (mixed types): use them as they are."""
    try:
        codes, _ = pd.factorize(np.concatenate([np.asarray(p, dtype=object) for p in parts]), sort=True)
    except TypeError:
        return None
    return np.split(codes, np.cumsum([len(p) for p in parts])[:-1])


def _sample(x: pd.DataFrame, y: pd.Series, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    if len(y) <= LEAK_SAMPLE:
        return x, y
    index = y.sample(n=LEAK_SAMPLE, random_state=seed).index
    return x.loc[index], y.loc[index]


def _one_feature_score(
    train: pd.Series, y_train: pd.Series, test: pd.Series, y_test: pd.Series, task: str
) -> float | None:
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    numeric = pd.api.types.is_numeric_dtype(train) and not pd.api.types.is_bool_dtype(train)
    if numeric:
        tree: Any = (
            DecisionTreeClassifier(max_depth=4, random_state=0)
            if task == "classification"
            else DecisionTreeRegressor(max_depth=4, random_state=0)
        )
        fill = float(train.median()) if train.notna().any() else 0.0
        x_train = train.fillna(fill).to_numpy(dtype="float64").reshape(-1, 1)
        x_test = test.fillna(fill).to_numpy(dtype="float64").reshape(-1, 1)
        tree.fit(x_train, y_train)
        predicted = tree.predict(x_test)
        if task == "regression":  # a 16-leaf tree only approximates a line: y = 3x + 1 scores 0.98
            from sklearn.linear_model import LinearRegression

            line = LinearRegression().fit(x_train, y_train).predict(x_test)
            return max(float(r2_score(y_test, predicted)), float(r2_score(y_test, line)))
    else:
        keys_train = train.astype(object).where(train.notna(), "__missing__").astype(str)
        keys_test = test.astype(object).where(test.notna(), "__missing__").astype(str)
        grouped = y_train.groupby(keys_train.to_numpy())
        if task == "classification":
            lookup = grouped.agg(lambda v: v.value_counts().index[0])
            default = y_train.value_counts().index[0]
        else:
            lookup = grouped.mean()
            default = y_train.mean()
        predicted = keys_test.map(lookup).where(keys_test.isin(lookup.index), default).to_numpy()
    if task == "classification":
        if pd.api.types.is_integer_dtype(y_test):  # codes (sorted_codes): accuracy without the label checks
            return float(np.mean(y_test.to_numpy() == np.asarray(predicted, dtype="float64")))
        return float(accuracy_score(y_test.astype(str), pd.Series(predicted).astype(str)))
    return float(r2_score(y_test, predicted))


def rare_test_classes(y_train: pd.Series, y_test: pd.Series) -> dict[str, int]:
    """Classes with fewer than 2 rows among the held-out rows: their metrics say next to nothing."""
    counts = y_test.value_counts()
    classes = pd.unique(pd.concat([y_train, y_test]))
    return {str(c): int(counts.get(c, 0)) for c in sorted(classes, key=str) if counts.get(c, 0) < 2}
