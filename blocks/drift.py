from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field

from provenflow.monitoring.drift import DriftPolicy as Policy


class DriftPolicy(Block):
    """How a model's drift monitor decides, edited in the Prefect UI.

    Example:
        ```python
        from provenflow.blocks.drift import DriftPolicy

        policy = DriftPolicy.load("BLOCK_NAME").policy()
        ```
    """

    _block_type_name: ClassVar[str] = "provenflow Drift Policy"
    _block_type_slug: ClassVar[str] = "provenflow-drift-policy"
    _description: ClassVar[str] = (
        "Thresholds, tests, window and minimum sample size of provenflow's drift checks."
    )

    psi_threshold: float = Field(default=0.1, description="PSI at or above this is drift.")
    wasserstein_threshold: float = Field(
        default=0.1, description="Wasserstein distance in reference standard deviations."
    )
    significance: float = Field(default=0.05, description="KS and chi-square drift below this p-value.")
    missing_threshold: float = Field(
        default=0.1, description="Change in the share of missing values that is drift."
    )
    numeric_tests: list[str] = Field(
        default=["psi", "wasserstein", "missing"], description="Tests that decide numeric drift."
    )
    categorical_tests: list[str] = Field(
        default=["psi", "missing"], description="Tests that decide categorical drift."
    )
    min_rows: int = Field(default=500, description="Fewer rows in the window is not enough data: no verdict.")
    window_minutes: int = Field(default=60, description="How much of the prediction log one check reads.")
    require_significance: bool = Field(
        default=True, description="PSI and Wasserstein count only when KS or chi-square is significant too."
    )
    drift_share: float = Field(
        default=0.0, description="Share of drifted features that makes the model drift (0: any)."
    )
    prediction_decides: bool = Field(default=True, description="Whether prediction drift alone is drift.")
    retrain_source: str | None = Field(
        default=None,
        description="Where the retrain flow reads the newest data from (a path or URL without credentials).",
    )
    retrain_source_credentials: str | None = Field(
        default=None, description="Name of a Prefect Secret block holding user:password for retrain_source."
    )
    auto_approve: bool = Field(
        default=False, description="Whether retraining promotes without a UI approval."
    )
    retrain_deployment: str | None = Field(
        default=None,
        description=(
            "The team's own training deployment (FLOW/DEPLOYMENT, from its prefect.yaml) that retraining "
            "runs instead of the built-in data-run and model-run; its flow registers the model with "
            "provenflow.log_model under the champion's name."
        ),
    )
    retrain_parameters: dict = Field(
        default_factory=dict, description="Parameters for retrain_deployment's flow run."
    )

    def policy(self) -> Policy:
        return Policy(
            psi_threshold=self.psi_threshold, wasserstein_threshold=self.wasserstein_threshold,
            significance=self.significance, missing_threshold=self.missing_threshold,
            numeric_tests=tuple(self.numeric_tests), categorical_tests=tuple(self.categorical_tests),
            min_rows=self.min_rows, window=timedelta(minutes=self.window_minutes),
            require_significance=self.require_significance, drift_share=self.drift_share,
            prediction_decides=self.prediction_decides,
        )  # fmt: skip
