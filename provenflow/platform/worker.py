"""provenflow's process worker: Prefect's own ``ProcessWorker``, whose flow runs fork from the warm runner.

    python -m provenflow.platform.worker --pool provenflow-process [other `prefect worker start` options]

``provenflow up`` starts it for the provenflow-process pool. Prefect's worker starts every flow run as a
new interpreter (``python -m prefect.engine``, behind a workspace supervisor that imports Prefect once
more), which pays Prefect's, pandas' and scikit-learn's imports on each run (+2.9 s over the plain
script for a model-run). This one gives each run it starts the command ``python -m
provenflow.platform.engine_client RUNNER_HOME`` instead: a small client that has the project's warm
runner fork the run (``provenflow.platform.runner``), or runs the engine itself when no runner is up.

Everything else is Prefect's worker unchanged: polling, job variables, the flow run's environment,
cancellation (the worker's SIGTERM, then SIGKILL, reach the client, which hands the SIGTERM on; a
client killed outright takes its run with it), crash detection from the exit status. A deployment
whose job variables set their own ``command`` keeps it. Prefect is imported when ``main`` runs, never
when this module is imported.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

CLIENT = "provenflow.platform.engine_client"


def client_command(home: Path) -> list[str]:
    """The command a flow run starts with: the engine client, asking the runner of HOME."""
    return [sys.executable, "-m", CLIENT, str(home)]


def warm_process_worker(home: Path) -> type:
    """A ProcessWorker class whose runs ask the warm runner of HOME first. Defining it makes it the
    ``process`` worker type of this interpreter (Prefect's registry keeps the last class of a type)."""
    from prefect.utilities.processutils import command_to_string
    from prefect.workers.process import ProcessJobConfiguration, ProcessWorker

    command = command_to_string(client_command(home))

    class WarmProcessWorker(ProcessWorker):
        type = "process"

        async def run(
            self, flow_run: Any, configuration: ProcessJobConfiguration, task_status: Any = None
        ) -> Any:
            if not configuration._command_configured:  # a deployment's own `command` stays its own
                configuration.command = command
                configuration._command_configured = True
            return await super().run(flow_run, configuration, task_status)

    return WarmProcessWorker


def main(argv: list[str]) -> None:
    """``prefect worker start --type process ARGV`` with the warm worker class."""
    from provenflow.platform import runner

    home = runner.home()
    with warnings.catch_warnings():
        # Prefect warns "… has key 'process' that matches existing registered type": the point of it.
        warnings.simplefilter("ignore")
        warm_process_worker(home)
    from prefect.cli import app

    sys.argv = ["prefect", "worker", "start", "--type", "process", *argv]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
