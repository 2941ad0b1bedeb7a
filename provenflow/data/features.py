"""Column roles: what each column of a dataset version is to a model, and which columns a model uses.

A role is decided once per dataset version from its schema and profile (``column_roles``), so
``datasets show`` and every model run on that version agree without reading the data:

- numeric, boolean, categorical (few distinct values): features as they are;
- datetime: datetime dtypes, and text of which at least DATE_SHARE of the non-missing values parse
  as dates; turned into numbers inside the model (``provenflow.modeling.preprocessing.DateFeatures``), so
  the served model takes the date string the user has;
- identifier (or free text): more than IDENTIFIER_SHARE of the values distinct, or more than
  IDENTIFIER_DISTINCT distinct values: one-hot encoding it would learn the rows by heart, so it is
  left out, with a notice. Whole numbers with many values are one too when the column is named like
  a key (``id``, ``customer_id``, ``orderId``, ``identifier``, ``index``) or numbers the rows
  (every value from its minimum to its maximum, once): a model would split on the row order;
- constant: one value (or none at all): carries nothing, left out.

A model run can override a role (``roles={"zip": "categorical"}``), name the columns to use
(``features=[...]``) or leave some out (``exclude=[...]``); the choice is recorded in the model's
signature, and the run's parameters reproduce it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from provenflow.data.dates import count_dates, date_format, format_sample, parse_dates
from provenflow.errors import TrainingError, did_you_mean

Role = Literal["numeric", "boolean", "categorical", "datetime", "identifier", "constant"]
ROLES: tuple[str, ...] = ("numeric", "boolean", "categorical", "datetime", "identifier", "constant")
LEFT_OUT: frozenset[str] = frozenset({"identifier", "constant"})
# A role a user may ask for: leaving a column out is --exclude's job, and "constant" is a fact.
OVERRIDES: tuple[str, ...] = ("numeric", "categorical", "datetime")

DATE_SHARE = 0.95
IDENTIFIER_SHARE = 0.5
IDENTIFIER_DISTINCT = 1000
# A column with this many distinct values or fewer is a category whatever the share: 12 distinct
# values in 20 rows are a small table's categories, not identifiers.
FEW_DISTINCT = 20


@dataclass(frozen=True)
class ColumnRole:
    name: str
    role: str
    why: str  # one short phrase, shown by `datasets show` and in notices

    @property
    def used(self) -> bool:
        return self.role not in LEFT_OUT


# -- roles -------------------------------------------------------------------------------


def column_roles(profile: dict, frame: pd.DataFrame | None = None) -> dict[str, ColumnRole]:
    """Each column's role, from a dataset version's profile (``datasets.profile_of``). For a
    profile recorded before it counted dates, text columns are checked on ``frame`` when given, else
    on the profile's most frequent values."""
    roles = {}
    for name, entry in profile["columns"].items():
        roles[name] = _role(name, entry, None if frame is None else frame.get(name))
    return roles


# Key-like names: whole word, snake_case / kebab suffix or prefix, or camelCase suffix (not "paid").
_KEY_NAME = re.compile(r"(?i)^(id|ids|identifier|index|key|uuid|guid|obs|row_?(id|num|number))$|[_\W]id$|^id[_\W]")
_CAMEL_KEY = re.compile(r"[a-z0-9](Id|ID)$")
MIN_NUMBERED_ROWS = 50


def _numeric_identifier(name: str, entry: dict) -> str | None:
    """Why a numeric column is a key or a row number, or None when it is a number."""
    whole = str(entry.get("dtype", "")).startswith(("int", "uint"))
    if not whole or "values" in entry or entry.get("min") is None:  # "values": few distinct ones
        return None
    if _KEY_NAME.search(name) or _CAMEL_KEY.search(name):
        return "whole numbers named like a key"
    count, span = int(entry.get("count", 0)), entry["max"] - entry["min"] + 1
    if count >= MIN_NUMBERED_ROWS and not entry.get("missing") and span == count:
        return f"numbers the rows: every whole number from {entry['min']:g} to {entry['max']:g}"
    return None


def _role(name: str, entry: dict, values: pd.Series | None) -> ColumnRole:
    dtype, count = str(entry.get("dtype", "")), int(entry.get("count", 0))
    if count == 0:
        return ColumnRole(name, "constant", "no values")
    if dtype.startswith("datetime"):
        return ColumnRole(name, "datetime", f"{dtype} column")
    if dtype in ("bool", "boolean"):
        return ColumnRole(name, "boolean", "true/false")
    if entry.get("kind") == "numeric":
        if entry.get("min") == entry.get("max") and entry.get("min") is not None:
            return ColumnRole(name, "constant", f"always {entry['min']:g}")
        if set(entry.get("values") or {}) == {"0.0", "1.0"}:
            return ColumnRole(name, "boolean", "0/1")
        key = _numeric_identifier(name, entry)
        if key:
            return ColumnRole(name, "identifier", f"{key}; give --role {name}=numeric to use it")
        return ColumnRole(name, "numeric", "numbers")
    distinct = int(entry.get("distinct", 0))
    if distinct == 2 and set(entry.get("frequencies") or {}) <= {"True", "False"}:
        return ColumnRole(name, "boolean", "true/false")  # booleans with missing values: object dtype
    if distinct <= 1:
        return ColumnRole(name, "constant", f"always {next(iter(entry.get('frequencies') or {'?': 0}))!r}")
    dates = _dates(entry, values)
    if dates >= DATE_SHARE * count:
        return ColumnRole(name, "datetime", f"{dates / count:.0%} of values are dates")
    share = distinct / count
    if distinct > IDENTIFIER_DISTINCT or (share > IDENTIFIER_SHARE and distinct > FEW_DISTINCT):
        return ColumnRole(
            name,
            "identifier",
            f"{distinct:,} distinct values in {count:,} ({share:.0%}): an identifier or free text",
        )
    return ColumnRole(name, "categorical", f"{distinct:,} distinct values")


def _dates(entry: dict, values: pd.Series | None) -> int:
    if "dates" in entry:
        return int(entry["dates"])
    if values is not None:
        return count_dates(values)
    frequencies = entry.get("frequencies") or {}
    sample = pd.Series(list(frequencies), dtype=object)
    fmt = date_format(format_sample(sample))
    if fmt is None:
        return 0
    parsed = parse_dates(sample, fmt).notna().to_numpy()
    seen = sum(frequencies.values())
    share = sum(c for c, ok in zip(frequencies.values(), parsed, strict=True) if ok) / max(seen, 1)
    return int(share * int(entry.get("count", 0)))


# -- a model run's choice ----------------------------------------------------------------


@dataclass(frozen=True)
class FeatureChoice:
    """What the user asked for: all usable columns (default), only ``features``, minus ``exclude``,
    with some ``roles`` overridden."""

    features: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    roles: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        features: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        roles: Mapping[str, str] | None = None,
    ) -> FeatureChoice:
        return cls(tuple(features) if features is not None else None, tuple(exclude or ()), dict(roles or {}))


@dataclass(frozen=True)
class Selection:
    """The columns a model uses, in order, with their roles; and those left out, with why."""

    used: dict[str, str]  # name -> role
    left_out: dict[str, str]  # name -> why
    date_formats: dict[str, str | None]

    def of_role(self, *roles: str) -> list[str]:
        return [name for name, role in self.used.items() if role in roles]


def parse_roles(items: Iterable[str]) -> dict[str, str]:
    """``col=role`` strings from the command line."""
    out = {}
    for item in items:
        name, sep, role = item.partition("=")
        if not sep or not name.strip():
            raise TrainingError(f"role {item!r} is not COLUMN=ROLE, e.g. zip=categorical")
        out[name.strip()] = role.strip()
    return out


def select(frame: pd.DataFrame, target: str, choice: FeatureChoice, profile: dict | None = None) -> Selection:
    """The model's columns: the user's choice applied to the roles of ``frame``'s dataset version."""
    from provenflow.data.datasets import profile_of

    columns = [str(c) for c in frame.columns if str(c) != target]
    asked = [*(choice.features or ()), *choice.exclude, *choice.roles]
    unknown = [c for c in asked if c not in columns]
    if unknown:
        name = unknown[0]
        where = " (it is the target)" if name == target else did_you_mean(name, columns)
        raise TrainingError(
            f"column {name!r} is not a feature column of the dataset{where}; columns: {', '.join(columns)}"
        )
    for name, role in choice.roles.items():
        if role not in OVERRIDES:
            raise TrainingError(
                f"role {role!r} for column {name!r} is not one of {', '.join(OVERRIDES)}{did_you_mean(role, OVERRIDES)} "
                "(to leave a column out, use exclude)"
            )
        if role == "numeric" and not pd.api.types.is_numeric_dtype(frame[name]):
            raise TrainingError(
                f"column {name!r} holds {frame[name].dtype} values, not numbers; it cannot have role numeric"
            )
    profile = profile if profile is not None and _covers(profile, columns) else profile_of(frame[columns])
    roles = column_roles(profile, frame)
    used: dict[str, str] = {}
    left_out: dict[str, str] = {}
    for name in choice.features if choice.features is not None else columns:
        decided = roles[name]
        role = choice.roles.get(name, decided.role)
        if name in choice.exclude:
            left_out[name] = "excluded"
        elif role in LEFT_OUT and choice.features is None:
            left_out[name] = f"{decided.role}: {decided.why}"
        else:
            # Asked for by name: a column the roles would leave out is still used, as categories.
            used[name] = "categorical" if role in LEFT_OUT else role
    if choice.features is not None:
        left_out.update({c: "not in features" for c in columns if c not in used and c not in left_out})
    if not used:
        raise TrainingError(
            "no feature columns are left to train on (left out: "
            + ", ".join(f"{n} ({why})" for n, why in left_out.items())
            + "); name them with features=/--features or change a role with --role COLUMN=ROLE"
        )
    formats = {
        name: None
        if pd.api.types.is_datetime64_any_dtype(frame[name])
        else date_format(format_sample(frame[name]))
        for name, role in used.items()
        if role == "datetime"
    }
    return Selection(used, left_out, formats)


def _covers(profile: dict, columns: list[str]) -> bool:
    return set(columns) <= set(profile.get("columns", {}))
