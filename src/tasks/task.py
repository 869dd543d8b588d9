"""What a task is: the interface every task class satisfies (src/tasks/<name>.py).

A task says what a network predicts, which head and loss it trains with, how it is scored, and what
it is compared against. It is resolved once from the dataset (`tasks.get(splits.info.task)`) and the
object is passed down: the network spec takes its `head`, the predictor its `predictions`, the
evaluation its metrics and baselines, the sweep and compare its objectives and headline metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from src.data.base import Splits
from src.data.scaling import Standardizer
from src.frameworks.spec import Head

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from src.evaluation import Evaluation
    from src.predictor import Predictor

Direction = Literal["minimize", "maximize"]


class Task(Protocol):
    """A task class subclasses this (src/tasks/regression.py); the methods without a body are its to write."""

    name: str
    # Metric name → direction, in the results table's order.
    metrics: dict[str, Direction]
    # The headline metric: what ranks the results table and heads compare's columns.
    rank_by: str
    loss_label: str
    head: Head

    def standardizer(self, splits: Splits, standardize: bool) -> Standardizer:
        """What gets standardised, fitted on the training split."""

    def network_sizes(self, splits: Splits) -> tuple[int, int]:
        """(num_features, num_outputs) of the network."""

    def predictions(self, outputs: np.ndarray, scaler: Standardizer) -> np.ndarray:
        """The network's raw outputs → what a prediction means (values, probabilities)."""

    def score(self, truth: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        """Metric name → value, for every metric in `metrics`."""

    def baselines(self, splits: Splits, x: np.ndarray) -> dict[str, np.ndarray]:
        """Baseline name → predictions for `x`, each fitted on the training split only."""

    def reference_scores(self, splits: Splits, split: str) -> dict[str, dict[str, float]]:
        """Reference name → metrics on `split` of references that predict nothing sample by sample (a
        language model's general-purpose compressors); none, unless a task says."""
        return {}

    def predictions_csv(self, evaluation: Evaluation) -> str:
        """The per-sample predictions artifact."""

    def figures(self, evaluation: Evaluation, title: str) -> dict[str, Figure]:
        """Artifact path → figure, beyond the loss curve every task has (none, unless a task says)."""
        return {}

    def artifacts(self, predictor: Predictor, splits: Splits) -> dict[str, str]:
        """Artifact path → text, such as a language model's sample (none, unless a task says)."""
        return {}


def rank_metric(task: Task) -> tuple[str, bool]:
    """The metric that ranks the task's results, and whether higher is better."""
    return task.rank_by, task.metrics[task.rank_by] == "maximize"


def csv_text(columns: Mapping[str, object]) -> str:
    """Columns as CSV text, with floats that round-trip float32 exactly."""
    import io

    import pandas as pd  # imported here: only writing the artifact needs it

    buffer = io.StringIO()
    pd.DataFrame(columns).to_csv(buffer, index=False, float_format="%.9g")
    return buffer.getvalue()
