"""data-run: read a CSV/Parquet source, validate it, store a versioned Parquet dataset, record the run."""

from __future__ import annotations

from prefect import flow

import provenflow
from provenflow.refs import check_name, resolve_dataset
from tasks.data import read_source, store_dataset, store_source, validate_frame
from tasks.workspace import open_workspace


@flow(name="data-run", flow_run_name="data-{name}")
def data_run(
    name: str,
    source: str,
    suite: str | None = None,
    register_version: bool = True,
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Version a dataset: NAME is the dataset's name, SOURCE a path or fsspec URL of a CSV or Parquet file.

    SUITE is a Great Expectations suite (JSON); by default expectations/NAME.json, generated from
    the first good dataset when it does not exist yet. With REGISTER_VERSION off (reproductions)
    the dataset is stored and linked to the run but no dataset version is added.
    """
    workspace = open_workspace(ledger_block, store_block)
    parameters = {"name": name, "source": source, "suite": suite, "register_version": register_version}
    with provenflow.start(
        name, kind="data", flow="data-run", parameters=parameters, workspace=workspace
    ) as run:
        check_name(name, "dataset")
        frame = read_source(source)
        report = validate_frame(name, frame, suite)
        run.link("input", "file", source, store_source(workspace, source))
        dataset = store_dataset(workspace, name, frame, source)
        if register_version:
            run.output(dataset)
        else:
            run.link("output", "dataset", f"{name} (not registered)", dataset.digest)
        run.log_metrics(
            {"rows": dataset.rows, "columns": dataset.columns, "expectations_passed": report.successful}
        )
    ref = f"{name}@{dataset.digest.short}"
    with workspace.ledger.reader() as session:
        new = register_version and resolve_dataset(session, ref).run_id == run.id
    return {
        "run_id": run.id,
        "dataset": {
            "name": name,
            "version": dataset.digest.short,
            "ref": ref,
            "hash": dataset.digest.hex,
            "rows": dataset.rows,
            "columns": dataset.columns,
            "new": new,
            "repaired": dataset.repaired,
        },
        "validation": report.as_dict(),
        "prefect_url": run.prefect_url,
    }
