"""reproduce: re-run a recorded data or model run from its recorded inputs and code, and prove the result."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from typing import Literal

import provenflow
from provenflow.flows._flow import flow
from provenflow.ledger import models as m
from provenflow.modeling import reproduce as core
from provenflow.project import project_root
from provenflow.tasks.reproduce import checkout_code, compare_results, load_recorded_run, rerun, verify_inputs
from provenflow.tasks.workspace import open_workspace


@flow(name="reproduce", flow_run_name="reproduce-{run_id}")
def reproduce(
    run_id: str,
    code: Literal["recorded", "current"] = "recorded",
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Re-run RUN_ID with its recorded parameters and inputs, and compare the outputs bit for bit.

    CODE is the code the re-run executes: the recorded commit and uncommitted diff (default), or
    the project as it is now, to check whether today's code still gives the recorded result.
    """
    workspace = open_workspace(ledger_block, store_block)
    original = load_recorded_run(workspace, run_id)
    scratch = core.scratch_folder()
    parameters = {"run_id": original.id, "code": code}
    try:
        with provenflow.start(f"reproduce-{original.name}", kind="reproduction", flow="reproduce",
                              parameters=parameters, workspace=workspace) as run:  # fmt: skip
            verify_inputs(workspace, original)
            checkout = checkout_code(workspace, original, code, scratch)
            again = rerun(
                workspace,
                original,
                checkout,
                scratch,
                {"ledger_block": ledger_block, "store_block": store_block},
            )
            result = compare_results(workspace, original, again, code)
            run.log_metrics({"identical": float(result.verdict == "identical")})
            run.record(lambda session: session.add(m.Reproduction(
                original_run_id=original.id, run_id=run.id, rerun_id=again.id, verdict=result.verdict,
                causes=result.causes, code_source=code, report=result.__dict__, created_at=datetime.now(UTC),
            )))  # fmt: skip
    finally:
        if code == "recorded" and (scratch / "code").exists():
            core.remove_worktree(project_root(), scratch / "code")
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "original": original.id,
        "reproduction": again.id,
        "verdict": result.verdict,
        "model_hash": result.output_hash if original.flow == "model-run" else None,
        "dataset_hash": result.output_hash if original.flow == "data-run" else None,
        "outputs": result.output_hash if original.entry else None,
        "entry": original.entry,
        "metrics": result.metrics,
        "env_diff": result.env_diff,
        "code": result.code,
        "causes": result.causes,
        "notes": result.notes,
        "reproduce_run": run.id,
    }
