"""Prefect tasks: the steps flows compose, each a thin wrapper over the core in provenflow/."""
