"""The one exception hierarchy of provenflow.

    ProvenflowError
    ├── ConfigError            settings, blocks, server
    ├── RefError               a dataset/model/run reference that is malformed or unknown
    ├── DataError              a data source that is missing, empty or unparsable
    │   └── ValidationFailed   data that breaks its expectation suite
    ├── TrainingError          target column, estimator path, hyper-parameters
    ├── EstimationUnavailable  provenflow.monitoring.estimation: no performance estimate for this model or log
    ├── LedgerError            the ledger database: unreachable, restarted, full, busy, newer schema
    │   └── LedgerConflict     a write refused by a constraint (another process wrote the same record)
    ├── StoreError             the content-addressed store
    │   └── IntegrityError     an object whose bytes no longer match its hash
    │       └── SignatureError a model version without a valid seal (provenflow.modeling.signing)
    │   └── ModelCodeError     a model whose own code (a module it pickles) cannot be found at load
    ├── ReproductionError      provenflow.modeling.reproduce: a run that cannot be re-run
    ├── PromotionError         provenflow.modeling.registry: aliases and the metric gate
    ├── DeployError            provenflow.deploy.errors: ManifestInvalid, RolloutFailed
    └── WorkerError            provenflow.workers.errors: vSphere worker VMs and work pools

Every message says what failed, the offending value, what was expected and how to fix it.
The CLI prints ``Error: <message>`` and exits with status 1.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path


class ProvenflowError(Exception):
    """Root of every error provenflow raises on purpose."""


class ConfigError(ProvenflowError):
    pass


class RefError(ProvenflowError):
    pass


class DataError(ProvenflowError):
    pass


class ValidationFailed(DataError):
    def __init__(self, message: str, failed: list[dict] | None = None) -> None:
        super().__init__(message)
        self.failed = failed or []


class TrainingError(ProvenflowError):
    pass


class EstimationUnavailable(ProvenflowError):
    pass


class LedgerError(ProvenflowError):
    pass


class LedgerConflict(LedgerError):
    pass


class StoreError(ProvenflowError):
    pass


class IntegrityError(StoreError):
    pass


class SignatureError(IntegrityError):
    pass


class ModelCodeError(StoreError):
    pass


def did_you_mean(value: str, candidates: Iterable[str]) -> str:
    """A ' Did you mean …?' suffix naming the closest candidates, or ''."""
    close = difflib.get_close_matches(value, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def first_line(exc: BaseException, limit: int = 300) -> str:
    """EXC's message cut to its first line (a library's hint paragraphs left out), or its type's name."""
    text = str(exc).strip().splitlines()
    return (text[0][:limit] if text else "") or type(exc).__name__


def last_logged_line(log: Path) -> str:
    """The last line a process wrote to LOG (an exited server's exception), cut to 300 characters."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""
