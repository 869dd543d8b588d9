"""Standardisation fitted on the training split only, and undone on predictions.

Kept with the model (as plain JSON numbers) so that a model loaded from MLflow predicts in the
data's original units, exactly as the training run reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.data.base import Split


@dataclass(frozen=True)
class Standardizer:
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray

    @classmethod
    def fit(cls, train: Split) -> "Standardizer":
        def std(values: np.ndarray) -> np.ndarray:
            spread = values.std(axis=0)
            return np.where(spread > 1e-12, spread, 1.0)  # a constant column stays as it is

        x = train.x.reshape(-1, train.x.shape[2]).astype(np.float64)
        y = train.y.astype(np.float64)
        return cls(x.mean(axis=0), std(x), y.mean(axis=0), std(y))

    @classmethod
    def identity(cls, num_features: int, num_outputs: int) -> "Standardizer":
        return cls(np.zeros(num_features), np.ones(num_features), np.zeros(num_outputs), np.ones(num_outputs))

    def transform_x(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.x_mean) / self.x_std).astype(np.float32)

    def transform(self, split: Split) -> Split:
        return Split(self.transform_x(split.x), ((split.y - self.y_mean) / self.y_std).astype(np.float32))

    def inverse_y(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, dtype=np.float64) * self.y_std + self.y_mean).astype(np.float32)

    @property
    def loss_scale(self) -> float:
        """Multiplies an MSE on standardised targets into original units: exact for one output (every
        regression dataset here); with several it uses the mean variance."""
        return float(np.mean(self.y_std**2))

    def to_dict(self) -> dict[str, list[float]]:
        return {key: np.asarray(getattr(self, key), dtype=np.float64).tolist()
                for key in ("x_mean", "x_std", "y_mean", "y_std")}

    @classmethod
    def from_dict(cls, values: dict[str, list[float]]) -> "Standardizer":
        return cls(*(np.asarray(values[key], dtype=np.float64) for key in ("x_mean", "x_std", "y_mean", "y_std")))
