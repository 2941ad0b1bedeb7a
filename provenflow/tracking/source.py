"""The code a run executed: git commit, the uncommitted diff, and the notebook or script file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from provenflow.digest import Digest

# Untracked files larger than this are left out of the recorded diff (they are usually data).
UNTRACKED_LIMIT = 1024 * 1024
# In an image built from a checkout (the flows image, provenflow/flows_image.py) there is no git: this file
# at the project's root says which commit the code is, and whether the tree had uncommitted changes.
CODE_STAMP = ".provenflow-code.json"


@dataclass(frozen=True)
class CodeState:
    commit: str | None
    dirty: bool | None
    diff: bytes | None  # `git diff HEAD --binary` plus untracked files; None when clean or no git
    file: str | None  # notebook or script, relative to the git root where possible
    file_hash: str | None
    skipped_untracked: tuple[str, ...] = ()
    root: Path | None = None  # the git repository's root, when there is one

    @property
    def diff_hash(self) -> str | None:
        return Digest.of_bytes(self.diff).hex if self.diff else None


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)


def current_code_file() -> Path | None:
    """The notebook (Jupyter sets JPY_SESSION_NAME to its path) or the script being run."""
    notebook = os.environ.get("JPY_SESSION_NAME")
    if notebook and Path(notebook).is_file():
        return Path(notebook)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name.split(".")[0] in ("provenflow", "prefect", "pytest"):
        return None  # `python -m` of a tool: not the user's code
    script = getattr(main, "__file__", None)
    if not script or not Path(script).is_file():
        return None
    # An installed entry point (the provenflow CLI, a Prefect worker) is not the user's code.
    resolved = Path(script).resolve()
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        if resolved.is_relative_to(Path(prefix).resolve()):
            return None
    return Path(script)


def _stamped(cwd: Path) -> tuple[str | None, bool | None]:
    for folder in (cwd, *cwd.parents):
        stamp = folder / CODE_STAMP
        if stamp.is_file():
            try:
                recorded = json.loads(stamp.read_text())
            except (OSError, ValueError):
                return None, None
            return recorded.get("commit"), recorded.get("dirty")
    return None, None


def _bytecode(name: str) -> bool:
    """A file Python writes itself when the team's code is imported (a project without a .gitignore
    has them untracked): recorded, it would make every run dirty and every reproduction differ in code."""
    return "__pycache__" in Path(name).parts or name.endswith((".pyc", ".pyo"))


def capture_code(cwd: Path | None = None, code_file: Path | None = None) -> CodeState:
    cwd = (cwd or Path.cwd()).resolve()
    code_file = code_file or current_code_file()
    file_hash = _file_identity(code_file) if code_file else None
    try:
        top = _git(["rev-parse", "--show-toplevel"], cwd)
    except FileNotFoundError:
        top = None
    if top is None or top.returncode != 0:
        return CodeState(*_stamped(cwd), None, str(code_file) if code_file else None, file_hash)
    root = Path(top.stdout.decode().strip())
    rel_file = None
    if code_file:
        try:
            rel_file = str(code_file.resolve().relative_to(root))
        except ValueError:
            rel_file = str(code_file)
    head = _git(["rev-parse", "HEAD"], root)
    commit = head.stdout.decode().strip() if head.returncode == 0 else None
    diff = _git(["diff", "HEAD", "--binary"], root).stdout if commit else b""
    untracked = _git(["ls-files", "--others", "--exclude-standard", "-z"], root).stdout.decode()
    skipped = []
    parts = [diff]
    for name in filter(None, untracked.split("\0")):
        if _bytecode(name):  # Python's own cache of the code, written by importing it: not code
            continue
        path = root / name
        if not path.is_file() or path.stat().st_size > UNTRACKED_LIMIT:
            skipped.append(name)
            continue
        parts.append(_git(["diff", "--binary", "--no-index", "/dev/null", name], root).stdout)
    full = b"".join(parts)
    return CodeState(
        commit=commit,
        dirty=bool(full) or bool(skipped),
        diff=full or None,
        file=rel_file,
        file_hash=file_hash,
        skipped_untracked=tuple(skipped),
        root=root,
    )


def _file_identity(code_file: Path) -> str:
    """A script's bytes; a notebook's code cells (its outputs change every time it runs)."""
    if code_file.suffix == ".ipynb":
        from provenflow.tracking.entry import notebook_cells_hash

        return notebook_cells_hash(code_file)
    return Digest.of_file(code_file).hex
