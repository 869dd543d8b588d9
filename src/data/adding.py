"""The adding problem (Hochreiter & Schmidhuber, 1997): a test of long-range memory.

Channel 0 holds uniform values, channel 1 marks exactly two steps with a one (one in each half of
the sequence, the halves equally long); the target is the sum of the two marked values. Predicting the mean (1.0) scores an
MSE of about 0.167, the bar a model must clear; `seq_len` is the difficulty knob.
"""

from dataclasses import dataclass

import numpy as np

from src.errors import require
from src.data.base import DatasetInfo, SplitParams, Splits, random_split

NAME = "adding"


@dataclass
class Params(SplitParams):
    name: str = NAME
    seq_len: int = 50
    num_samples: int = 3000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.seq_len >= 2, "dataset.seq_len", "must be an integer >= 2 (two marked steps)",
                self.seq_len)


def generate(params: Params, seed: int) -> Splits:
    rng = np.random.default_rng(seed)
    count, length = params.num_samples, params.seq_len
    values = rng.uniform(0.0, 1.0, size=(count, length))
    half = length // 2  # each marker has `half` places; with an odd length the middle step is never marked
    first = rng.integers(0, half, size=count)
    second = rng.integers(length - half, length, size=count)
    markers = np.zeros((count, length))
    rows = np.arange(count)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=2)
    y = values[rows, first] + values[rows, second]
    train, val, test = random_split(x, y, params.val_fraction, params.test_fraction, rng)
    info = DatasetInfo(NAME)
    return Splits(train, val, test, info)
