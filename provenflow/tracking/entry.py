"""What a run of the team's own code executed, so `provenflow reproduce` can execute it again.

    {"kind": "script",   "path": "train.py", "argv": ["--alpha", "0.1"], "cwd": "."}
    {"kind": "notebook", "path": "nb/explore.ipynb", "cells": "<hash of the code cells' source>", "cwd": "nb"}
    {"kind": "flow",     "path": "pipelines/train.py", "function": "train", "parameters": {...}, "cwd": "."}

Paths are relative to the git repository's root: reproduction runs them in a worktree of the
recorded commit. A notebook's identity is its code cells' source, not its outputs (which change
every time it runs). Runs of provenflow's own flows record no entry: they are replayed from their
parameters.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from provenflow.digest import Digest
from provenflow.errors import ProvenflowError
from provenflow.tracking import prefect_context


def notebook_cells_hash(path: Path) -> str:
    """The hash of a notebook's code cells' source, in order; outputs and metadata left out."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = [
            "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in notebook.get("cells", [])
            if c.get("cell_type") == "code"
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProvenflowError(f"cannot read the notebook {path} ({type(exc).__name__}); is it an .ipynb file?") from None
    return Digest.of_bytes(json.dumps(cells).encode()).hex


def _relative(path: Path, root: Path) -> str | None:
    try:
        return Path(os.path.relpath(path.resolve(), root)).as_posix() if path.resolve().is_relative_to(root) else None
    except (OSError, ValueError):
        return None


def capture_entry(root: Path | None, code_file: Path | None, jsonable: Any) -> dict | None:
    """The entry point of the code running now, or None when it cannot be re-executed (no git
    repository, or code outside it). ``jsonable`` makes flow parameters JSON (the run's own rule)."""
    if root is None:
        return None
    root = root.resolve()
    cwd = _relative(Path.cwd(), root)
    flow = prefect_context.current_flow_entry()
    if flow is not None:
        path = _relative(Path(flow.file), root) if flow.file else None
        if path is None or flow.qualname != flow.function:  # nested or outside the repository
            return None
        return {"kind": "flow", "path": path, "function": flow.function,
                "parameters": jsonable(flow.parameters), "cwd": cwd}  # fmt: skip
    if code_file is None:
        return None
    path = _relative(code_file, root)
    if path is None:
        return None
    if code_file.suffix == ".ipynb":
        return {"kind": "notebook", "path": path, "cells": notebook_cells_hash(code_file), "cwd": cwd}
    return {"kind": "script", "path": path, "argv": list(sys.argv[1:]), "cwd": cwd}
