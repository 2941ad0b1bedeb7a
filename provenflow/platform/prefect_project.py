"""provenflow's deployments in a Prefect project's prefect.yaml: `provenflow init` adds them to a
team's own file (keeping its entries, comments and order), and `provenflow up` deploys from it.

provenflow ships its deployments as prefect.yaml inside the package (the repository's own file).
Their entrypoints are module paths (``provenflow.flows.model_run:model_run``): they load from the
installed provenflow wherever the project is, never from files in the user's repository.
"""

from __future__ import annotations

import io
import os
import stat
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
    text = read_project_file(own)
    if text is not None and any(is_provenflows(d) for d in _load_text(text, own).get("deployments") or []):
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
    own = read_project_file(path)
    created = own is None
    text = _new_file(root) if own is None else own
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
        _replace(path, edited)
    return InitReport(str(path), created, [d["name"] for d in missing], kept)


# -- YAML -------------------------------------------------------------------------------------------


def _load_plain(path: Path) -> dict:
    return _load_text(path.read_text(), path)


def _load_text(text: str, path: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{path} is not valid YAML ({' '.join(str(exc).split())}); fix it and try again"
        ) from exc


# -- reading and writing the project's file safely ------------------------------------------------

MAX_BYTES = 1024 * 1024  # a prefect.yaml is a few KB
# Nodes the file would have with every alias expanded: a few hundred in real projects (Prefect's
# `definitions:` + `*anchor` style), ~10^9 in a 557-byte alias bomb.
MAX_EXPANDED_NODES = 100_000
# Explicit tags a prefect.yaml may carry: YAML's own scalar and collection types; anything else
# (`!!python/object`, a custom `!tag`) means the file is not plain data.
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)


def read_project_file(path: Path) -> str | None:
    """The text of the project's prefect.yaml, None when there is none; ConfigError for anything
    init cannot edit safely: a symbolic link (it would write through it, or create its target), a
    non-regular file (a FIFO would block the read), more than MAX_BYTES, text that is not UTF-8,
    tags, or aliases that expand beyond MAX_EXPANDED_NODES (counted on the events, never expanded)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(
            f"{path} is a symbolic link (to {os.readlink(path)}); provenflow init edits only a regular "
            "file in the project: replace the link with the file itself"
        )
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is not a regular file; provenflow init edits only a regular prefect.yaml")
    # O_NOFOLLOW and O_NONBLOCK: a link or FIFO swapped in since the check neither redirects nor blocks.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ConfigError(
                f"{path} is not a regular file; provenflow init edits only a regular prefect.yaml"
            )
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"{path} has more than {MAX_BYTES} bytes; a prefect.yaml this big is not one to edit"
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise ConfigError(f"{path} is not UTF-8 text (UTF-16 or binary); save it as UTF-8 and try again")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x}); save it as UTF-8 and try again"
        ) from None
    _check_plain_yaml(text, path)
    return text


def _check_plain_yaml(text: str, path: Path) -> None:
    """Refuse tags and alias expansion beyond the budget, from the parser's events (linear time)."""
    import yaml

    sizes: dict[str, int] = {}
    open_nodes: list[list] = []  # [anchor, nodes so far] of each collection being read
    total = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            tag = getattr(event, "tag", None)
            if tag is not None and tag not in _PLAIN_TAGS and tag != "!":
                raise ConfigError(
                    f"{path} uses the tag {tag!r}; provenflow init edits plain YAML only (no tags): remove it"
                )
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                open_nodes.append([event.anchor, 1])
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                anchor, nodes = open_nodes.pop()
                if anchor is not None:
                    sizes[anchor] = nodes
            elif isinstance(event, yaml.AliasEvent):
                nodes = sizes.get(event.anchor, 1)
            elif isinstance(event, yaml.ScalarEvent):
                nodes = 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            else:
                continue
            if open_nodes:
                open_nodes[-1][1] += nodes
            total += nodes
            if total > MAX_EXPANDED_NODES or (open_nodes and open_nodes[-1][1] > MAX_EXPANDED_NODES):
                raise ConfigError(
                    f"{path} has aliases (*name) that expand to more than {MAX_EXPANDED_NODES} nodes; "
                    "provenflow init refuses such a file (an alias bomb): write its repeated parts out"
                )
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{path} is not valid YAML ({' '.join(str(exc).split())}); fix it and try again"
        ) from None


def _replace(path: Path, text: str) -> None:
    """Write TEXT to PATH whole: a new file renamed over it, so a link put in its place is replaced,
    never written through, and a crash leaves the old file."""
    temporary = path.with_name(f".{path.name}.provenflow-tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists() and not path.is_symlink():
            os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


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
