"""Noisy sine waves of random frequency and phase: forecast the next value from a window."""

from dataclasses import dataclass

import numpy as np

from src.errors import require
from src.data.base import DatasetInfo, SplitParams, Splits, random_split

NAME = "sine"


@dataclass
class Params(SplitParams):
    name: str = NAME
    seq_len: int = 20
    num_samples: int = 2000
    # Periods, in steps, drawn uniformly from [min_period, max_period].
    min_period: float = 8.0
    max_period: float = 40.0
    noise: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.seq_len >= 1, "dataset.seq_len", "must be an integer >= 1", self.seq_len)
        require(0 < self.min_period <= self.max_period, "dataset.min_period",
                "must be > 0 and <= dataset.max_period", self.min_period)
        require(self.noise >= 0, "dataset.noise", "must be >= 0", self.noise)


def generate(params: Params, seed: int) -> Splits:
    rng = np.random.default_rng(seed)
    count = params.num_samples
    period = rng.uniform(params.min_period, params.max_period, size=(count, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(count, 1))
    steps = np.arange(params.seq_len + 1)[None, :]
    waves = np.sin(2 * np.pi * steps / period + phase) + params.noise * rng.standard_normal((count, params.seq_len + 1))
    train, val, test = random_split(waves[:, :-1], waves[:, -1], params.val_fraction, params.test_fraction, rng)
    info = DatasetInfo(NAME)
    return Splits(train, val, test, info)
