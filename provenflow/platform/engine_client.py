"""The command provenflow's process worker runs for each flow run, in place of ``python -m prefect.engine``:

    python -m provenflow.platform.engine_client RUNNER_HOME

It asks the warm runner of RUNNER_HOME (``provenflow.platform.runner``) to fork the flow run that the
worker put in ``PREFECT__FLOW_RUN_ID``, with this process's environment, working directory and
stdout/stderr, so the run starts with Prefect, pandas and scikit-learn imported (seconds less per run).
It imports none of them itself: it stays the small process the worker watches, passes the worker's
SIGTERM (a cancellation) on to the run, and exits as the run did, with its exit status or by the
same signal, so the worker's crash detection reads it as it would read the engine's own process.
When no runner answers, or the runner was started from other code or another interpreter, it becomes
``python -m prefect.engine`` itself (exec: the same pid for the worker).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

ENGINE = ("-m", "prefect.engine")


def main(argv: list[str]) -> None:
    from provenflow.platform import runner

    end = runner.submit_flow_run(Path(argv[0])) if argv else None
    if end is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *ENGINE])
    if end.get("signal"):
        number = int(end["signal"])
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    sys.exit(int(end.get("exit", 1)))


if __name__ == "__main__":
    main(sys.argv[1:])
