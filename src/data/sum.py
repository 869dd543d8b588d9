"""The notebook's second task: the sum of `seq_len` uniform random numbers."""

from dataclasses import dataclass

import numpy as np

from src.errors import require
from src.data.base import DatasetInfo, SplitParams, Splits, random_split

NAME = "sum"


@dataclass
class Params(SplitParams):
    name: str = NAME
    seq_len: int = 10
    num_samples: int = 1000
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.seq_len >= 1, "dataset.seq_len", "must be an integer >= 1", self.seq_len)
        require(self.high > self.low, "dataset.high", "must be > dataset.low", self.high)


def generate(params: Params, seed: int) -> Splits:
    rng = np.random.default_rng(seed)
    x = rng.uniform(params.low, params.high, size=(params.num_samples, params.seq_len))
    y = x.sum(axis=1)
    train, val, test = random_split(x, y, params.val_fraction, params.test_fraction, rng)
    info = DatasetInfo(NAME)
    return Splits(train, val, test, info)
