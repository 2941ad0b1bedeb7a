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


def value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={value_text(v)}" for k, v in value.items()) + "}"
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
    settings = " ".join(f"{k}={value_text(v)}" for k, v in sorted((params or {}).items()))
    room = MAX_LENGTH - len(head) - len(tail) - 1
    if settings and room > 1:
        if len(settings) > room:
            settings = settings[: room - 1].rstrip() + "…"
        head = f"{head} {settings}"
    return head + tail


def source_label(source: str) -> str:
    """The file name of a path or URL (no folder, query or user part): ``s3://b/raw/penguins.csv?x`` →
    ``penguins.csv``."""
    tail = source.split("?", 1)[0].split("#", 1)[0].rstrip("/\\")
    tail = tail.rsplit("@", 1)[-1] if "://" in tail and "/" not in tail.split("://", 1)[1] else tail
    return tail.replace("\\", "/").rsplit("/", 1)[-1] or source


def data_run_name(name: str, source: str, version: str | None = None) -> str:
    """``penguins · penguins.csv · @99d47d``: the dataset, the file it came from and, once stored, the
    version it became (every data run was ``data-penguins`` before, all alike in the run list)."""
    label = f"{name} · {source_label(source)}"
    if version:
        label += f" · @{version[:6]}"
    return label if len(label) <= MAX_LENGTH else label[: MAX_LENGTH - 1] + "…"


_RUN_PREFIXES = ("drift", "quality", "promote", "deploy", "release", "retrain", "reproduce", "sweep")


def metrics_key_parts(kind: str, run_name: str) -> tuple[str, str, str]:
    """The parts of a non-model run's metrics-table key, grouped by model: ``("metrics", "drift",
    "penguins-sex")`` for ``drift-penguins-sex@production``. The alias or version stays out of the
    key (each ``@…`` made its own hashed key before), so one model's drift checks share one table."""
    base = run_name.split("@", 1)[0]
    for prefix in _RUN_PREFIXES:
        if base.startswith(prefix + "-") and len(base) > len(prefix) + 1:
            base = base[len(prefix) + 1 :]
            break
    return "metrics", kind, base
