"""Recording a run: the active run and its record, the code and environment it ran in, what Prefect
tells about it, the read-side views of the ledger (catalog, lineage) and the run card."""
