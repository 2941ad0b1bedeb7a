"""A re-run in its own process, started by ``provenflow reproduce`` (reproduce.replay_command) in
isolated mode with this provenflow imported first, the spec on stdin.

Inside the checked-out code it runs provenflow's own flow (data-run, model-run) with the pinned
parameters, or the team's recorded entry point: a script (as ``python script.py ARGS``), a Prefect
flow (loaded from its file, called with its recorded parameters) or a notebook (executed in a real
Jupyter kernel). The result is printed on one line after a marker, for the parent to read.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

from provenflow.modeling.reproduce import RESULT_MARKER


def main() -> None:
    spec = json.load(sys.stdin)
    from provenflow.platform import server

    server.connect(quiet=True)
    if spec.get("entry"):
        run_entry(spec["entry"], Path(spec["root"]), spec["trusted"])
        print(RESULT_MARKER + json.dumps({"entry": spec["entry"]["kind"]}), flush=True)
        return
    if spec["flow"] == "model-run":
        from provenflow.flows.model_run import model_run as flow
    elif spec["flow"] == "data-run":
        from provenflow.flows.data_run import data_run as flow
    else:
        raise SystemExit(f"cannot replay flow {spec['flow']!r}")
    result = flow(**spec["parameters"])
    print(RESULT_MARKER + json.dumps(result, default=str), flush=True)


def run_entry(entry: dict, root: Path, trusted: str) -> None:
    # provenflow is imported already (the bootstrap did it from the trusted folder), so the code's own
    # folders put first on sys.path below cannot replace it.
    os.chdir(root / (entry.get("cwd") or "."))
    path = root / entry["path"]
    if entry["kind"] == "script":
        sys.argv = [str(path), *entry.get("argv", [])]
        sys.path.insert(0, str(path.parent))
        runpy.run_path(str(path), run_name="__main__")
    elif entry["kind"] == "flow":
        from prefect.flows import load_flow_from_entrypoint

        sys.path.insert(0, str(path.parent))
        flow = load_flow_from_entrypoint(f"{path}:{entry['function']}")
        flow(**entry.get("parameters", {}))
    elif entry["kind"] == "notebook":
        run_notebook(path, trusted)
    else:
        raise SystemExit(f"cannot re-run an entry point of kind {entry['kind']!r}")


def run_notebook(path: Path, trusted: str) -> None:
    """The notebook in a real Jupyter kernel, in its own folder, as Jupyter would run it. The kernel
    is another process: it gets this provenflow first on its path and no working folder on it
    (PYTHONSAFEPATH), then the notebook's folder, for the modules next to it."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    os.environ["JPY_SESSION_NAME"] = str(path)  # what Jupyter sets, and nbclient does not
    os.environ["PYTHONPATH"] = os.pathsep.join([trusted, str(path.parent)])
    os.environ["PYTHONSAFEPATH"] = "1"
    NotebookClient(notebook, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip


if __name__ == "__main__":
    main()
