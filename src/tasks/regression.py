"""Regression (the default task): one value per output, scored in the data's original units.

Metrics mse, rmse, mae, r2. Baselines, each fitted on the training split only: `last` (the window's
last value of the target channel), `mean` (the training targets' mean), `linear` (least squares on
the flattened window plus a bias). Baselines are honest: on `next_number` the linear baseline is
exact, and the table says so rather than hiding it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from src import plots
from src.data.base import Split, Splits
from src.data.scaling import Standardizer
from src.frameworks.spec import Head
from src.tasks.task import Direction, Task, csv_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from src.evaluation import Evaluation


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² over all outputs (R² is 0 for predicting the truth's own mean)."""
    truth = np.asarray(y_true, dtype=np.float64)
    error = np.asarray(y_pred, dtype=np.float64) - truth
    mse = float(np.mean(error**2))
    total = float(np.sum((truth - truth.mean(axis=0)) ** 2))
    r2 = 1.0 - float(np.sum(error**2)) / total if total > 0 else float("nan")
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(error))), "r2": r2}


def _flat_with_bias(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1).astype(np.float64)
    return np.hstack([flat, np.ones((len(x), 1))])


def baseline_predictions(train: Split, x: np.ndarray, target_feature: int) -> dict[str, np.ndarray]:
    """What the baselines predict for inputs `x`, each fitted on the training split only."""
    outputs = train.y.shape[1]
    coefficients, *_ = np.linalg.lstsq(_flat_with_bias(train.x), train.y.astype(np.float64), rcond=None)
    return {
        "last": np.repeat(x[:, -1, target_feature : target_feature + 1], outputs, axis=1),
        "mean": np.broadcast_to(train.y.astype(np.float64).mean(axis=0), (len(x), outputs)),
        "linear": _flat_with_bias(x) @ coefficients,
    }


class Regression(Task):
    name = "regression"
    metrics: dict[str, Direction] = {"mse": "minimize", "rmse": "minimize", "mae": "minimize", "r2": "maximize"}
    rank_by = "mse"
    loss_label = "MSE (original units)"
    head = Head(loss="mse")

    def standardizer(self, splits: Splits, standardize: bool) -> Standardizer:
        """Inputs and targets, so that the network sees unit scale; metrics stay in original units."""
        if standardize:
            return Standardizer.fit(splits.train)
        return Standardizer.identity(splits.num_features, splits.num_outputs)

    def network_sizes(self, splits: Splits) -> tuple[int, int]:
        return splits.num_features, splits.num_outputs

    def predictions(self, outputs: np.ndarray, scaler: Standardizer) -> np.ndarray:
        """Values in the data's original units."""
        return scaler.inverse_y(outputs)

    def score(self, truth: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        return regression_metrics(truth, predictions)

    def baselines(self, splits: Splits, x: np.ndarray) -> dict[str, np.ndarray]:
        return baseline_predictions(splits.train, x, splits.info.target_feature)

    def predictions_csv(self, evaluation: Evaluation) -> str:
        """Truth and every predictor's output per test sample (exact float32 round trip)."""
        columns = {"index": np.arange(len(evaluation.truth)), "y_true": evaluation.truth[:, 0]}
        columns.update({f"y_pred_{name}": values[:, 0] for name, values in evaluation.predictions.items()})
        return csv_text(columns)

    def figures(self, evaluation: Evaluation, title: str) -> dict[str, Figure]:
        return {
            "plots/predictions_vs_truth.png": plots.predictions_vs_truth(
                evaluation.truth, evaluation.predictions, title
            )
        }
