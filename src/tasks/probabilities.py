"""What the two cross-entropy tasks share: logits to probabilities, and the log-likelihood of the truth."""

from __future__ import annotations

import numpy as np

# A predicted probability of exactly 0 for what happened would make the log loss infinite.
PROBABILITY_FLOOR = 1e-15


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis, computed in float64 (shifted by the maximum), returned as float32."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def mean_negative_log_likelihood(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """-mean(ln p[label]) in nats, over every position of `labels` (probabilities: labels' shape + classes)."""
    labels = np.asarray(labels).astype(np.int64)
    chosen = np.take_along_axis(np.asarray(probabilities, dtype=np.float64), labels[..., None], axis=-1)
    return float(-np.mean(np.log(np.maximum(chosen, PROBABILITY_FLOOR))))
