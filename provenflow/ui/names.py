"""Flow-run names that tell runs apart in the Prefect UI's run list."""

from __future__ import annotations

from typing import Any

MAX_LENGTH = 100  # Prefect keeps longer names, but the run list cuts them off
_SUFFIXES = ("Classifier", "Regressor")


def short_estimator(path: str) -> str:
    """``sklearn.ensemble.RandomForestClassifier`` → ``RandomForest`` (the task shows in the metrics)."""
    name = path.rsplit(".", 1)[-1]
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and name != suffix:
            return name.removesuffix(suffix)
    return name


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def short_dataset(ref: str) -> str:
    """``penguins@f2ac45e0…`` → ``penguins@f2ac45`` (a content hash is unique in far fewer digits)."""
    name, _, version = ref.partition("@")
    if len(version) > 6 and all(c in "0123456789abcdef" for c in version):
        version = version[:6]
    return f"{name}@{version}" if version else name


def model_run_name(name: str, estimator: str, params: dict[str, Any] | None, dataset: str) -> str:
    """``penguins-sex · RandomForest n_estimators=200 · penguins@f2ac45``: the model, the estimator
    with the parameters given (sorted, so the same parameters always read the same), the data.
    Cut to MAX_LENGTH with an ellipsis in the parameters, never in the model or the data."""
    head, tail = f"{name} · {short_estimator(estimator)}", f" · {short_dataset(dataset)}"
    settings = " ".join(f"{k}={_value(v)}" for k, v in sorted((params or {}).items()))
    room = MAX_LENGTH - len(head) - len(tail) - 1
    if settings and room > 1:
        if len(settings) > room:
            settings = settings[: room - 1].rstrip() + "…"
        head = f"{head} {settings}"
    return head + tail
