"""data-run: read a CSV/JSON/Parquet source, validate it, store a versioned Parquet dataset, record the run."""

from __future__ import annotations

import provenflow
from provenflow.flows._flow import flow
from provenflow.ledger.refs import check_name, resolve_dataset
from provenflow.redact import redact
from provenflow.tasks.data import (
    choose_suite,
    ingest_source,
    store_query,
    store_source,
    store_suite,
    validate_frame,
)
from provenflow.tasks.naming import name_run
from provenflow.tasks.workspace import open_workspace
from provenflow.ui.names import data_run_name


def _run_name() -> str:
    """``penguins · penguins.csv`` (the version is added once it is known)."""
    from prefect.runtime import flow_run

    return data_run_name(flow_run.parameters["name"], str(flow_run.parameters["source"]))


@flow(name="data-run", flow_run_name=_run_name)
def data_run(
    name: str,
    source: str,
    suite: str | None = None,
    register_version: bool = True,
    source_credentials: str | None = None,
    ledger_block: str | None = None,
    store_block: str | None = None,
    query: str | None = None,
    table: str | None = None,
    reread: bool = False,
) -> dict:
    """Version a dataset: NAME is the dataset's name, SOURCE a path or fsspec URL of a CSV, JSON
    (Lines) or Parquet file, or of a folder, glob or prefix of such files (Hive key=value folders
    become columns; the version is a manifest of one part per file).

    SUITE is a Great Expectations suite (JSON); by default expectations/NAME.json when the project
    has one, else the suite the last data run of NAME kept to, else (or when SUITE is "new") one
    generated from this data (stored with the run, never written into the source tree). With REGISTER_VERSION off (reproductions)
    the dataset is stored and linked to the run but no dataset version is added. SOURCE_CREDENTIALS
    names a Prefect Secret block holding ``user:password`` for the source (a URL never holds them).
    With QUERY (a SELECT) or TABLE, SOURCE is a SQLAlchemy URL (postgresql://user@host/db) and the
    dataset is the query's rows, ordered by every column so the same data gives the same version.
    A folder's file whose size, modification time and inode are unchanged is not read again, unless
    REREAD (a file rewritten in place with its time kept, as `rsync --inplace -t` does).
    """
    _check_deployed_source(source)
    workspace = open_workspace(ledger_block, store_block)
    parameters = {"name": name, "source": source, "suite": suite, "register_version": register_version}
    if source_credentials:  # the Secret block's name (retrain reads it again with the source)
        parameters["source_credentials"] = source_credentials
    parameters.update({k: v for k, v in (("query", query), ("table", table)) if v})
    with provenflow.start(
        name, kind="data", flow="data-run", parameters=parameters, workspace=workspace
    ) as run:
        check_name(name, "dataset")
        ingested = ingest_source(workspace, name, source, source_credentials, query, table, reread)
        for note in ingested.notes:  # what was inferred: no header row, its encoding, '?' as missing
            run.warn(note["message"], level=note["level"])
        expectations = choose_suite(workspace, name, ingested.sample, suite, ingested.output.profile)
        report = validate_frame(ingested.sample, expectations, ingested.validated_on)
        if report.notice:  # a suite beyond the expectation budget: say what was not checked
            run.warn(report.notice)
        run.link("input", "suite", expectations.where, store_suite(workspace, expectations))
        if query or table:  # the query text, under the URL without its password
            run.link("input", "query", redact(source), store_query(workspace, query, table))
        elif ingested.files:  # a folder, glob or prefix: each file (stored as it was read) and each part
            for relative, digest in ingested.files:
                run.link("input", "file", relative, digest)
            for part in ingested.parts:  # named here so gc keeps them and verify checks them
                run.link("output", "part", f"{name} part", part)
        else:
            run.link("input", "file", source, store_source(workspace, source, source_credentials))
        dataset = ingested.output
        name_run(data_run_name(name, source, dataset.digest.short))
        if register_version:
            run.output(dataset)
        else:
            run.link("output", "dataset", f"{name} (not registered)", dataset.digest)
        run.log_metrics(
            {
                "rows": dataset.rows,
                "columns": dataset.columns,
                "expectations_passed": report.successful,
                # Great Expectations saw every row, or (a table larger than ingest.SAMPLE_ROWS) a seeded sample.
                "validated_rows": len(ingested.sample),
            }
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
            "unread_files": ingested.unread,
        },
        "validation": report.as_dict(),
        "warnings": run.summary.warnings,
        "prefect_url": run.prefect_url,
    }


def _check_deployed_source(source: str) -> None:
    """On a worker (a deployment's run), local sources only under the allowed roots: the run's
    parameters come from whoever can launch the deployment, the file is read with the worker's rights."""
    from prefect.runtime import deployment

    if deployment.id:
        from provenflow.data.roots import check_local_source
        from provenflow.settings import get_settings

        check_local_source(source, get_settings().source_roots_or_default())
