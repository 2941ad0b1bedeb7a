"""Old import paths of modules that moved into the layered sub-packages (2026-12), kept working.

``provenflow.shadow`` was a module of its own before ``provenflow.monitoring.shadow``; a user's script,
notebook or a pickle may still name the old path. Importing an old path hands back the module at its
new place (the same module object, so classes and functions compare equal) with a DeprecationWarning;
pickled models name ``provenflow.preprocessing.DateFeatures`` by design and get no warning.
``provenflow.tracking`` is a package now: its ``Run``, ``RunSummary``, ``start`` and ``active_run``
are forwarded by the package itself."""

from __future__ import annotations

import importlib
import sys
import warnings

# old name under provenflow -> new name under provenflow
MOVED = {
    "store": "storage.store",
    "gc": "storage.gc",
    "verify": "storage.verify",
    "references": "storage.references",
    "refs": "ledger.refs",
    "ingest": "data.ingest",
    "dialect": "data.dialect",
    "jsonl": "data.jsonl",
    "parquet_types": "data.parquet_types",
    "datasets": "data.datasets",
    "features": "data.features",
    "validation": "data.validation",
    "data_checks": "data.data_checks",
    "credentials": "data.credentials",
    "tracking": "tracking.run",
    "environment": "tracking.environment",
    "source": "tracking.source",
    "prefect_context": "tracking.prefect_context",
    "lineage": "tracking.lineage",
    "catalog": "tracking.catalog",
    "report": "tracking.report",
    "crashes": "tracking.crashes",
    "training": "modeling.training",
    "preprocessing": "modeling.preprocessing",
    "registry": "modeling.registry",
    "signing": "modeling.signing",
    "reproduce": "modeling.reproduce",
    "replay": "modeling.replay",
    "sweep": "modeling.sweep",
    "drift": "monitoring.drift",
    "drift_report": "monitoring.drift_report",
    "performance": "monitoring.performance",
    "estimation": "monitoring.estimation",
    "labels": "monitoring.labels",
    "shadow": "monitoring.shadow",
    "reports": "monitoring.reports",
    "release": "deploy.release",
    "flows_image": "deploy.flows_image",
    "server": "platform.server",
    "runner": "platform.runner",
    "stack": "platform.stack",
    "prefect_project": "platform.prefect_project",
    "prefect_crashes": "platform.prefect_crashes",
    "pidfile": "platform.pidfile",
    "probe": "platform.probe",
}
_QUIET = {"preprocessing"}  # part of stored models' bytes: not deprecated, permanent


def _new_name(fullname: str) -> str | None:
    if not fullname.startswith("provenflow."):
        return None
    old = fullname.removeprefix("provenflow.")
    head, _, rest = old.partition(".")
    if head not in MOVED or head == "tracking":  # tracking: the old module's name is the new package's
        return None
    return "provenflow." + MOVED[head] + ("." + rest if rest else "")


class _MovedModules:
    """A meta-path finder of last resort: only names that no file answers reach it."""

    @staticmethod
    def find_spec(fullname: str, path: object = None, target: object = None):
        if _new_name(fullname) is None:
            return None
        from importlib.machinery import ModuleSpec

        return ModuleSpec(fullname, _MovedModules)

    @staticmethod
    def create_module(spec):
        new = _new_name(spec.name)
        assert new is not None
        if spec.name.removeprefix("provenflow.") not in _QUIET:
            warnings.warn(
                f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=2
            )
        return importlib.import_module(new)

    @staticmethod
    def exec_module(module) -> None:
        pass  # already executed at its new place


def install() -> None:
    if _MovedModules not in sys.meta_path:
        sys.meta_path.append(_MovedModules)
