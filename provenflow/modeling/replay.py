"""A re-run in its own process: ``python -m provenflow.modeling.replay < spec.json``.

Started by ``provenflow reproduce`` inside the checked-out code, so the flow, the tasks and any
user module an estimator path names are imported from that code. The flow's result is printed on
one line after a marker, for the parent to read.
"""

from __future__ import annotations

import json
import sys

from provenflow.modeling.reproduce import RESULT_MARKER


def main() -> None:
    spec = json.load(sys.stdin)
    from provenflow.platform import server

    server.connect(quiet=True)
    if spec["flow"] == "model-run":
        from provenflow.flows.model_run import model_run as flow
    elif spec["flow"] == "data-run":
        from provenflow.flows.data_run import data_run as flow
    else:
        raise SystemExit(f"cannot replay flow {spec['flow']!r}")
    result = flow(**spec["parameters"])
    print(RESULT_MARKER + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
