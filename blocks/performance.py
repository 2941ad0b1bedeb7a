from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field

from provenflow.monitoring.performance import PerformancePolicy as Policy


class PerformancePolicy(Block):
    """When a deployed model's realized performance (its predictions joined with the labels that
    arrived later) counts as degraded, edited in the Prefect UI.

    Example:
        ```python
        from provenflow.blocks.performance import PerformancePolicy

        policy = PerformancePolicy.load("BLOCK_NAME").policy()
        ```
    """

    _block_type_name: ClassVar[str] = "provenflow Performance Policy"
    _block_type_slug: ClassVar[str] = "provenflow-performance-policy"
    _description: ClassVar[str] = (
        "Metric, allowed drop from the training run's held-out score, and minimum labelled rows of "
        "provenflow's quality checks."
    )

    metric: str = Field(
        default="accuracy",
        description="The training run's metric to watch: accuracy, f1, roc_auc (classifiers); rmse, mae, r2.",
    )
    allowed_drop: float = Field(
        default=0.05,
        description="How much worse than the held-out score is still fine, in the metric's units (RMSE/MAE: higher).",
    )
    min_labelled_rows: int = Field(
        default=200, description="Fewer labelled rows in a window is not enough to judge it."
    )
    window_minutes: int = Field(default=1440, description="Length of one window of predictions.")
    windows: int = Field(default=7, description="How many windows, back from now, one check reports.")
    confidence: float = Field(default=0.95, description="Level of the bootstrap interval around each value.")

    def policy(self) -> Policy:
        return Policy(
            metric=self.metric, allowed_drop=self.allowed_drop, min_labelled_rows=self.min_labelled_rows,
            window=timedelta(minutes=self.window_minutes), windows=self.windows, confidence=self.confidence,
        )  # fmt: skip
