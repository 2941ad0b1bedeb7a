"""During `provenflow reproduce`: the dataset versions a re-run must read, and the runs it started.

The reproducer starts the team's own code (script, notebook, Prefect flow) with two settings:

    PROVENFLOW_REPRODUCTION_PINS  a JSON file {"dataset name": "name@version", ...}: the versions the
                                  original run read. Every dataset reference the code resolves
                                  (``pf.input("churn@latest")``, ``pf.dataset(...)``) goes through
                                  :func:`pinned_dataset`, so ``@latest`` means what it meant then.
    PROVENFLOW_REPRODUCTION_RUNS  a file the re-run's runs append their ids to, one a line, so the
                                  reproducer finds the re-run in the ledger; and ``model:HASH`` for each
                                  model a re-run made, so the reproducer loads only a model whose hash
                                  came from the re-run itself, not from the ledger alone.

Outside a reproduction both are unset and these functions change nothing. :func:`reproducing` tells
code that registers things (``pf.log_model``, ``pf.log_dataset``) that it runs inside a reproduction.
"""

from __future__ import annotations

import json
from functools import cache

from provenflow.errors import ProvenflowError


def _settings():
    from provenflow.settings import get_settings

    return get_settings()


@cache
def _pins(path: str) -> dict[str, str]:
    try:
        pins = json.loads(open(path, encoding="utf-8").read())  # noqa: SIM115 - a small file, read once
    except (OSError, ValueError) as exc:
        raise ProvenflowError(f"cannot read the reproduction's dataset pins {path} ({exc})") from None
    return {str(k): str(v) for k, v in pins.items()}


def reproducing() -> bool:
    return _settings().reproduction_pins is not None


def pinned_dataset(ref: str) -> str:
    """``ref`` (``NAME@VERSION`` or ``NAME@latest``) as the reproduction pins it; else unchanged."""
    path = _settings().reproduction_pins
    if path is None:
        return ref
    name = ref.split("@", 1)[0]
    return _pins(str(path)).get(name, ref)


def note_started(run_id: str) -> None:
    path = _settings().reproduction_runs
    if path is not None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(run_id + "\n")


def note_model(digest_hex: str) -> None:
    """A model the re-run made (during a reproduction): its hash, on the reproducer's own channel."""
    path = _settings().reproduction_runs
    if path is not None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"model:{digest_hex}\n")


def read_noted(text: str) -> tuple[list[str], set[str]]:
    """The run ids and the model hashes a runs file holds."""
    tokens = text.split()
    return [t for t in tokens if ":" not in t], {t[6:] for t in tokens if t.startswith("model:")}
