"""Deploying released model images: to Kubernetes (``provenflow.deploy.kubernetes``).

Plain Python without Prefect; the ``deploy`` flow and the CLI wire these functions to blocks and the ledger.
Submodules are imported where used: the Kubernetes client is not needed to start the CLI.
"""
