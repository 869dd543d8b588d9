"""Metrics and the baselines every model is reported against, in the data's original units.

Baselines are honest: on `next_number` the linear least-squares baseline is exact, and the table
says so rather than hiding it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.data.base import Split, Splits

METRICS = ("mse", "rmse", "mae", "r2")
BASELINES = ("last", "mean", "linear")


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
    """What the baselines predict for inputs `x`, each fitted on the training split only.

    last: the window's last value of the target channel; mean: the training targets' mean;
    linear: least squares on the flattened window plus a bias.
    """
    outputs = train.y.shape[1]
    coefficients, *_ = np.linalg.lstsq(_flat_with_bias(train.x), train.y.astype(np.float64), rcond=None)
    return {
        "last": np.repeat(x[:, -1, target_feature:target_feature + 1], outputs, axis=1),
        "mean": np.broadcast_to(train.y.astype(np.float64).mean(axis=0), (len(x), outputs)),
        "linear": _flat_with_bias(x) @ coefficients,
    }


@dataclass(frozen=True)
class Evaluation:
    """Test metrics of the model and of each baseline, keyed by predictor then metric."""

    split: str
    metrics: dict[str, dict[str, float]]
    predictions: dict[str, np.ndarray]
    truth: np.ndarray

    def flat(self) -> dict[str, float]:
        """MLflow metric names: `test_mse` for the model, `baseline_last_test_mse` for baselines."""
        names = {}
        for predictor, values in self.metrics.items():
            prefix = f"{self.split}_" if predictor == "model" else f"baseline_{predictor}_{self.split}_"
            names.update({prefix + metric: value for metric, value in values.items()})
        return names

    def table(self) -> str:
        """The model against the baselines, best MSE first, as the terminal shows it."""
        header = f"{self.split:<16}" + "".join(f"{metric:>12}" for metric in METRICS)
        rows = sorted(self.metrics.items(), key=lambda item: item[1]["mse"])
        lines = [header, "-" * len(header)]
        for predictor, values in rows:
            label = predictor if predictor == "model" else f"baseline {predictor}"
            lines.append(f"{label:<16}" + "".join(f"{values[metric]:>12.4g}" for metric in METRICS))
        return "\n".join(lines)


def evaluate(splits: Splits, model_predictions: np.ndarray, split: str = "test") -> Evaluation:
    data = dict(splits.items())[split]
    predictions = {"model": np.asarray(model_predictions, dtype=np.float64)}
    predictions.update(baseline_predictions(splits.train, data.x, splits.info.target_feature))
    metrics = {name: regression_metrics(data.y, values) for name, values in predictions.items()}
    return Evaluation(split, metrics, predictions, data.y)
