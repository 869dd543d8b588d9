"""The notebook's first task: after a window of consecutive integers, predict the next one.

Windows start at i = train_start..train_stop-1 for training and at i = test_start..test_stop-1 for
testing, which lies outside the training range: the test split is an extrapolation (the notebook:
train 0..99, test 120..129, truth 125..134 for windows of five). Validation is the last
`val_fraction` of the training windows, not a random sample of them: early stopping then keeps the
weights that extrapolate best, which is what the test asks, rather than those that interpolate best.
"""

from dataclasses import dataclass

import numpy as np

from src.errors import require, require_fraction
from src.data.base import DatasetInfo, DatasetParams, Splits, as_split, holdout_last

NAME = "next_number"


@dataclass
class Params(DatasetParams):
    name: str = NAME
    seq_len: int = 5
    train_start: int = 0
    train_stop: int = 100
    test_start: int = 120
    test_stop: int = 130
    val_fraction: float = 0.2
    standardize: bool = True  # type: ignore[misc]

    def __post_init__(self) -> None:
        require(self.seq_len >= 1, "dataset.seq_len", "must be an integer >= 1", self.seq_len)
        require(self.train_stop - self.train_start >= 3, "dataset.train_stop",
                "must be at least train_start + 3", self.train_stop)
        require(self.test_stop > self.test_start, "dataset.test_stop", "must be > test_start", self.test_stop)
        # 0 trains on every window, as the notebook did; validation then watches the training set.
        require_fraction(self.val_fraction, "dataset.val_fraction")


def windows(starts: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """x[k] = starts[k] + (0..seq_len-1), y[k] = starts[k] + seq_len."""
    x = starts[:, None] + np.arange(seq_len)[None, :]
    return x, starts + seq_len


def generate(params: Params, seed: int) -> Splits:
    train_x, train_y = windows(np.arange(params.train_start, params.train_stop), params.seq_len)
    train, val = holdout_last(train_x, train_y, params.val_fraction)
    test = as_split(*windows(np.arange(params.test_start, params.test_stop), params.seq_len))
    info = DatasetInfo(NAME)
    return Splits(train, val, test, info)

