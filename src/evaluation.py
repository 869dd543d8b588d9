"""The model against the task's baselines on one split, in MLflow's names and as the terminal's table.

What is measured and what the baselines are is the task's (src/tasks/); this module only runs them
and names the results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from src.data.base import Splits
from src.tasks.task import Task, rank_metric


@dataclass(frozen=True)
class Evaluation:
    """Metrics of the model and of each baseline, keyed by predictor then metric."""

    split: str
    metrics: dict[str, dict[str, float]]
    predictions: dict[str, np.ndarray]
    truth: np.ndarray
    task: Task
    # The class names, or a language model's vocabulary (empty for regression).
    classes: list[str] = field(default_factory=list)

    def flat(self) -> dict[str, float]:
        """MLflow metric names: `test_mse` for the model, `baseline_last_test_mse` for baselines."""
        names = {}
        for predictor, values in self.metrics.items():
            prefix = f"{self.split}_" if predictor == "model" else f"baseline_{predictor}_{self.split}_"
            names.update({prefix + metric: value for metric, value in values.items()})
        return names

    def table(self) -> str:
        """The model against the baselines, best first by the task's headline metric."""
        rank_by, higher_is_better = rank_metric(self.task)
        columns = list(self.task.metrics)
        labels = {name: name if name == "model" else f"baseline {name}" for name in self.metrics}
        width = max(16, *(len(label) + 2 for label in labels.values()))
        header = f"{self.split:<{width}}" + "".join(f"{metric:>12}" for metric in columns)
        rows = sorted(
            self.metrics.items(), key=lambda item: -item[1][rank_by] if higher_is_better else item[1][rank_by]
        )
        lines = [header, "-" * len(header)]
        for predictor, values in rows:
            lines.append(f"{labels[predictor]:<{width}}" + "".join(f"{values[metric]:>12.4g}" for metric in columns))
        return "\n".join(lines)


def evaluate(task: Task, splits: Splits, model_predictions: np.ndarray, split: str = "test") -> Evaluation:
    """Score the model's predictions for `split` and the task's baselines on the same inputs."""
    data = dict(splits.items())[split]
    predictions = {"model": np.asarray(model_predictions, dtype=np.float64)}
    predictions.update(task.baselines(splits, data.x))
    metrics = {name: task.score(data.y, values) for name, values in predictions.items()}
    metrics.update(task.reference_scores(splits, split))
    return Evaluation(split, metrics, predictions, data.y, task, list(splits.info.classes))
