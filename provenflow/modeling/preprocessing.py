"""The preprocessing half of a model: the columns of a table made into what the estimator takes.

The pipeline is fitted with the estimator and pickled with it, so a served model takes the raw
columns the user has (a date as the string ``2012/01/01``, a category as its name). Its shape
follows the estimator, read from scikit-learn's estimator tags rather than from a list of names:

- dense output for estimators that do not take sparse input (``input_tags.sparse`` is False,
  e.g. HistGradientBoosting, GaussianNB, LDA); sparse one-hot on wide data for those that do
  (ColumnTransformer's ``sparse_threshold``), which keeps a linear model on 1,000 categories small;
- HistGradientBoosting* gets its categories as ordinal codes and ``categorical_features`` pointing
  at them: its native categorical splits, not one column per category;
- estimators that take only non-negative input (``input_tags.positive_only``, e.g. MultinomialNB)
  get numbers scaled into [0, 1] instead of standardised.

This module imports scikit-learn (~1 s): import it where a model is built, not at the top of a
module the CLI loads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from provenflow.data.dates import parse_dates
from provenflow.data.features import Selection

DATE_PARTS = ("year", "month", "day_of_week", "day_of_year", "elapsed_days")


class DateFeatures(TransformerMixin, BaseEstimator):
    """Date columns (text in a format, or datetime dtype) → year, month, day of week (Monday 0),
    day of year and days elapsed since 1970-01-01; NaN where a value is missing or not a date.

    ``formats`` maps each column to its strftime format (None: datetime dtype, or mixed formats).
    ``times`` maps a column whose values carry a time of day to the parts it also gives: ``hour``,
    and ``minute`` when the minutes vary (``time_parts`` decides from the training data).
    Stateless apart from the column names, so it is deterministic and pickles the same every time.
    """

    # Models pickled before ``times`` existed have no such attribute: the class's None is what they
    # read, so they unpickle to the behaviour they were trained with. A transformer without times
    # does not store it either, so its pickle has the same bytes as before.
    times: dict[str, list[str]] | None = None

    def __init__(
        self, formats: dict[str, str | None] | None = None, times: dict[str, list[str]] | None = None
    ) -> None:
        self.formats = formats
        if times:
            self.times = times

    def fit(self, X: Any, y: Any = None) -> DateFeatures:
        frame = _frame(X)
        self.columns_ = [str(c) for c in frame.columns]
        self.n_features_in_ = len(self.columns_)
        self.feature_names_in_ = np.asarray(self.columns_, dtype=object)
        return self

    def transform(self, X: Any) -> np.ndarray:
        frame = _frame(X, self.columns_)
        formats = self.formats or {}
        times = self.times or {}
        parts = []
        for column in self.columns_:
            when = parse_dates(frame[column].reset_index(drop=True), formats.get(column))
            parts += [
                when.dt.year,
                when.dt.month,
                when.dt.dayofweek,
                when.dt.dayofyear,
                (when - pd.Timestamp("1970-01-01")).dt.total_seconds() / 86400.0,
            ]
            parts += [getattr(when.dt, part) for part in times.get(column, ())]
        if not parts:
            return np.zeros((len(frame), 0))
        return np.column_stack([p.to_numpy(dtype="float64", na_value=np.nan) for p in parts])

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        times = self.times or {}
        return np.asarray(
            [f"{c}_{part}" for c in self.columns_ for part in (*DATE_PARTS, *times.get(c, ()))], dtype=object
        )


def time_parts(values: pd.Series, fmt: str | None) -> list[str]:
    """The time-of-day parts a date column's values call for: none when every value is at midnight
    (a date), ``hour`` when some are not, and ``minute`` too when the minutes vary."""
    when = parse_dates(values.dropna().reset_index(drop=True), fmt).dropna()
    if when.empty or (when == when.dt.normalize()).all():
        return []
    return ["hour", "minute"] if when.dt.minute.nunique() > 1 else ["hour"]


def _frame(X: Any, columns: list[str] | None = None) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    array = np.asarray(X, dtype=object)
    return pd.DataFrame(array.reshape(len(array), -1), columns=columns)


def _tags(estimator: Any) -> Any | None:
    from sklearn.utils import get_tags

    try:
        return get_tags(estimator)
    except Exception:  # a third-party estimator without tags: assume the strictest
        return None


def takes_sparse(estimator: Any) -> bool:
    tags = _tags(estimator)
    return bool(tags and tags.input_tags.sparse)


def native_categories(estimator: Any) -> bool:
    """HistGradientBoosting*: categories as ordinal codes, marked in ``categorical_features``."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    return isinstance(estimator, (HistGradientBoostingClassifier, HistGradientBoostingRegressor))


def _date_features(frame: pd.DataFrame, dates: list[str], formats: dict[str, str | None]) -> DateFeatures:
    """Time-of-day parts only for the columns that have them, so a date-only model pickles as before."""
    times = {c: parts for c in dates if (parts := time_parts(frame[c], formats.get(c)))}
    return DateFeatures({c: formats.get(c) for c in dates}, times or None)


def build_pipeline(frame: pd.DataFrame, selection: Selection, estimator: Any) -> Any:
    """The preprocessing for ``selection``'s columns of ``frame``, shaped for ``estimator``, then the
    estimator; ``categorical_features`` of a HistGradientBoosting estimator left at its default is
    pointed at the ordinal-coded columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

    tags = _tags(estimator)
    positive = bool(tags and tags.input_tags.positive_only)

    def scaler() -> Any:
        return MinMaxScaler(clip=True) if positive else StandardScaler()

    def is_number(column: str) -> bool:
        return pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])

    numeric = [c for c in selection.of_role("numeric", "boolean") if is_number(c)]
    dates = selection.of_role("datetime")
    categorical = [c for c in selection.used if c not in numeric and c not in dates]
    native = native_categories(estimator)
    steps = []
    # Categories first: a HistGradientBoosting estimator finds its categorical columns at 0..k-1.
    text = [c for c in categorical if not is_number(c) and selection.used[c] != "boolean"]
    # Numeric columns given role categorical, and booleans: a missing value takes the most frequent
    # one, as an encoder refuses True next to a "__missing__" string.
    values = [c for c in categorical if c not in text]
    for name, columns, fill in (
        ("categorical", text, "constant"),
        ("categorical_values", values, "most_frequent"),
    ):
        if not columns:
            continue
        if native:
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=np.nan, max_categories=estimator.max_bins
            )
        else:
            encoder = OneHotEncoder(handle_unknown="ignore")
        imputer = (
            SimpleImputer(strategy="constant", fill_value="__missing__")
            if fill == "constant"
            else SimpleImputer(strategy="most_frequent")
        )
        steps.append((name, Pipeline([("impute", imputer), ("encode", encoder)]), columns))
    if numeric:
        steps.append(
            (
                "numeric",
                Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", scaler())]),
                numeric,
            )
        )
    if dates:
        steps.append(
            (
                "datetime",
                Pipeline(
                    [
                        ("parts", _date_features(frame, dates, selection.date_formats)),
                        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", scaler()),
                    ]
                ),
                dates,
            )
        )
    if native and categorical and estimator.get_params().get("categorical_features") == "from_dtype":
        estimator.set_params(categorical_features=list(range(len(categorical))))
    prepare = ColumnTransformer(steps, sparse_threshold=0.3 if takes_sparse(estimator) else 0.0)
    return Pipeline([("prepare", prepare), ("model", estimator)])


# Pickled pipelines name this class by module path. Models trained before the core moved into
# sub-packages name ``provenflow.preprocessing.DateFeatures``; keeping that name (``provenflow._moved``
# answers its import) keeps new models' bytes as before, and so content hashes and reproductions.
DateFeatures.__module__ = "provenflow.preprocessing"
