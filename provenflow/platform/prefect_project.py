"""provenflow's deployments in a Prefect project's prefect.yaml: `provenflow init` adds them to a
team's own file (keeping its entries, comments and order), and `provenflow up` deploys from it.

provenflow ships its deployments as prefect.yaml inside the package (the repository's own file).
Their entrypoints are module paths (``provenflow.flows.model_run:model_run``): they load from the
installed provenflow wherever the project is, never from files in the user's repository.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provenflow.errors import ConfigError

PACKAGED = Path(__file__).resolve().parent.parent / "prefect.yaml"
ENTRYPOINT_PREFIX = "provenflow.flows."
_HEADER = (
    "provenflow's deployments, added by `provenflow init` (run it again after upgrading provenflow: it adds\n"
    "what is missing and keeps what is here). Start everything with `provenflow up`."
)


def provenflow_deployments() -> list[dict[str, Any]]:
    """provenflow's deployments, each complete (YAML anchors and merge keys resolved)."""
    return list(_load_plain(PACKAGED).get("deployments") or [])


def is_provenflows(deployment: dict) -> bool:
    return str(deployment.get("entrypoint") or "").startswith(ENTRYPOINT_PREFIX)


def deploy_file(root: Path) -> Path:
    """The prefect.yaml `up` deploys in project ROOT: the project's own once it holds provenflow's
    deployments (`provenflow init`, or provenflow's own repository), else the packaged one with its
    schedules paused (.provenflow/prefect.yaml): its monitors watch the demo's model, which another
    project does not have, so they would fail every hour."""
    own = root / "prefect.yaml"
    if own.is_file() and any(is_provenflows(d) for d in _load_plain(own).get("deployments") or []):
        return own
    import yaml

    paused = root / ".provenflow" / "prefect.yaml"
    document = _load_plain(PACKAGED)
    document["deployments"] = paused_schedules(document.get("deployments") or [])
    text = yaml.safe_dump(document, sort_keys=False)
    if not paused.is_file() or paused.read_text() != text:
        paused.parent.mkdir(parents=True, exist_ok=True)
        paused.write_text(text)
    return paused


def paused_schedules(deployments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DEPLOYMENTS with every schedule paused: to be pointed at the user's own model first (its
    `model` parameter), then switched on in the UI."""
    return [
        {**d, "schedules": [{**s, "active": False} for s in d["schedules"]]} if d.get("schedules") else d
        for d in deployments
    ]


@dataclass
class InitReport:
    prefect_yaml: str
    created: bool
    added: list[str]
    kept: list[str]

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def init(root: Path) -> InitReport:
    """Add provenflow's deployments missing from ROOT/prefect.yaml (created when absent). The file is
    edited as text: every byte of the user's own stays as it was (entries, comments, order, style);
    ours go at the end of its `deployments` list. Idempotent: a second run writes nothing."""
    path = root / "prefect.yaml"
    created = not path.exists()
    text = _new_file(root) if created else path.read_text()
    document = _load_positions(text, path)
    theirs = document.get("deployments") or []
    present = {(d.get("name"), d.get("entrypoint")) for d in theirs if hasattr(d, "get")}
    ours = paused_schedules(provenflow_deployments())  # the monitors watch the demo's model until edited
    missing = [d for d in ours if (d["name"], d["entrypoint"]) not in present]
    kept = [d["name"] for d in ours if (d["name"], d["entrypoint"]) in present]
    if missing:
        header = not any(is_provenflows(d) for d in theirs if hasattr(d, "get"))
        edited = _with_deployments(text, document, missing, header)
        import yaml

        # Never write a file that says anything else than theirs plus ours.
        before = yaml.safe_load(text) or {}
        try:
            after = yaml.safe_load(edited)
        except yaml.YAMLError:  # e.g. their list is in flow style, `[{…}]`: ours cannot follow as text
            after = None
        if after != {**before, "deployments": [*(before.get("deployments") or []), *missing]}:
            raise ConfigError(
                f"could not add provenflow's deployments to {path} without changing its own; add the "
                f"entries of {PACKAGED} to its `deployments` list by hand"
            )
        path.write_text(edited)
    return InitReport(str(path), created, [d["name"] for d in missing], kept)


# -- YAML -------------------------------------------------------------------------------------------


def _load_plain(path: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{path} is not valid YAML ({' '.join(str(exc).split())}); fix it and try again"
        ) from exc


def _load_positions(text: str, path: Path) -> Any:
    """TEXT loaded by ruamel.yaml (Prefect's own YAML library), which knows each node's line."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    try:
        document = YAML().load(text)
    except YAMLError as exc:
        raise ConfigError(
            f"{path} is not valid YAML ({' '.join(str(exc).split())}); fix it and try again"
        ) from exc
    document = CommentedMap() if document is None else document
    deployments = document.get("deployments") if hasattr(document, "get") else None
    if not hasattr(document, "get") or not isinstance(deployments, list | type(None)):
        raise ConfigError(f"{path} is not a Prefect project file (`deployments:` must be a list); fix it")
    return document


def _with_deployments(text: str, document: Any, new: list[dict], header: bool) -> str:
    """TEXT with the deployments NEW appended to its `deployments` list (added when it has none)."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    keys = list(document.keys())
    existing = document.get("deployments")
    if "deployments" not in document:
        lines += ["\n", "deployments:\n"]
        at, dash = len(lines), 0
    else:
        key_line = document.lc.key("deployments")[0]
        if existing:
            dash = max(existing.lc.item(0)[1] - 2, 0)  # the column of the user's "- "
        else:  # `deployments:` or `deployments: []`: make it a block list
            dash = 0
            lines[key_line] = "deployments:\n"
        following = keys[keys.index("deployments") + 1 :]
        at = document.lc.key(following[0])[0] if following else len(lines)
        while at > key_line + 1 and (not lines[at - 1].strip() or lines[at - 1].startswith("#")):
            at -= 1  # blank lines and comments above the next key belong to it
    block = _dump_list(new, dash)
    if header:
        block = "".join(" " * dash + "# " + line + "\n" for line in _HEADER.splitlines()) + block
    return "".join(lines[:at]) + block + "".join(lines[at:])


def _dump_list(items: list[dict], dash: int) -> str:
    """ITEMS as a block-style YAML list whose dashes sit at column DASH."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 4096
    # The user's style: dashes indented under their key, and so are nested lists; or neither.
    offset = 2 if dash >= 2 else 0
    yaml.indent(mapping=2, sequence=2 + offset, offset=offset)
    out = io.StringIO()
    yaml.dump(_commented(items), out)
    pad = " " * (dash - offset)
    return "".join(pad + line if line.strip() else line for line in out.getvalue().splitlines(True))


def _commented(value: Any) -> Any:
    """Plain dicts and lists as ruamel's round-trip types, so they dump in block style, in order."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        return CommentedMap((k, _commented(v)) for k, v in value.items())
    if isinstance(value, list):
        return CommentedSeq(_commented(v) for v in value)
    return value


def _new_file(root: Path) -> str:
    import prefect

    return (
        "# Prefect project file, created by `provenflow init`.\n"
        f"name: {root.name}\n"
        f"prefect-version: {prefect.__version__}\n"
        "\n"
        "build: null\n"
        "push: null\n"
        "\n"
        "deployments:\n"
    )
