"""What the bare scripts share: the workflow's data made with NumPy alone, the trainer's settings, and
a JSON line of timestamps and the test MSE on stdout that benchmarks.workflow reads.

Each script does what issue 16 compares the workflow with: it trains the same model on the same data
(a validation pass per epoch) and reports its test MSE in the data's own units, as the workflow's
results table does; so both sides predict the test split.

`sine_splits` repeats src/data/sine.generate (seed 0), src/data/base.random_split and
src/data/scaling.Standardizer step by step without importing them (so a bare script pays no import
of the project); benchmarks.workflow.check_bare_data proves the arrays are identical.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np

NUM_SAMPLES, SEQ_LEN, SEED = 20000, 50, 0
MIN_PERIOD, MAX_PERIOD, NOISE, VAL_FRACTION, TEST_FRACTION = 8.0, 40.0, 0.05, 0.15, 0.15
HIDDEN_SIZE, BATCH_SIZE, EPOCHS, LR, GRAD_CLIP = 32, 64, 5, 0.005, 1.0  # conf/trainer/default.yaml, the overrides
VAL_BATCH = 4096  # keras: the backends' PREDICT_BATCH, the whole validation split in one call (numpy: its own)


class SineSplits(NamedTuple):
    """Standardised float32 splits (x shaped (samples, steps, 1)) and the targets' scale."""

    x: np.ndarray
    y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    y_std: float  # a standardised MSE times y_std**2 is the MSE in the data's units


def sine_splits() -> SineSplits:
    rng = np.random.default_rng(SEED)
    period = rng.uniform(MIN_PERIOD, MAX_PERIOD, size=(NUM_SAMPLES, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(NUM_SAMPLES, 1))
    steps = np.arange(SEQ_LEN + 1)[None, :]
    waves = np.sin(2 * np.pi * steps / period + phase) + NOISE * rng.standard_normal((NUM_SAMPLES, SEQ_LEN + 1))
    num_val, num_test = round(NUM_SAMPLES * VAL_FRACTION), round(NUM_SAMPLES * TEST_FRACTION)
    order = rng.permutation(NUM_SAMPLES)
    train, val, test = (
        order[: NUM_SAMPLES - num_val - num_test],
        order[NUM_SAMPLES - num_val - num_test : -num_test],
        order[-num_test:],
    )
    x = waves[:, :-1, None].astype(np.float32)
    y = waves[:, -1:].astype(np.float32)
    x_train, y_train = x[train].astype(np.float64), y[train].astype(np.float64)
    x_mean, x_std, y_mean, y_std = x_train.mean(), x_train.std(), y_train.mean(), y_train.std()

    def scaled(values: np.ndarray, mean: float, std: float) -> np.ndarray:
        return ((values - mean) / std).astype(np.float32)

    return SineSplits(
        scaled(x[train], x_mean, x_std),
        scaled(y[train], y_mean, y_std),
        scaled(x[val], x_mean, x_std),
        scaled(y[val], y_mean, y_std),
        scaled(x[test], x_mean, x_std),
        scaled(y[test], y_mean, y_std),
        float(y_std),
    )


def report(**values: object) -> None:
    """One JSON line of timestamps (time.time()) and values."""
    print(json.dumps(values), flush=True)
