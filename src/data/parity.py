"""Classification: is the number of ones in a binary sequence odd? `seq_len` sets the difficulty.

Every input bit matters to the label, and flipping any one flips it: no linear function of the
window (the logistic baseline) does better than chance, and a recurrent network must carry one bit
through every step. `dataset.task=regression` asks for the same bit as a number (MSE instead of
cross-entropy), to compare how the two losses learn it.
"""

from dataclasses import dataclass

import numpy as np

from src.errors import require
from src.data.base import DatasetInfo, SplitParams, Splits, random_split

NAME = "parity"
TASKS = ("classification", "regression")


@dataclass
class Params(SplitParams):
    name: str = NAME
    seq_len: int = 8
    num_samples: int = 2000
    task: str = TASKS[0]

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.seq_len >= 1, "dataset.seq_len", "must be an integer >= 1", self.seq_len)
        require(self.task in TASKS, "dataset.task", f"must be one of {', '.join(TASKS)} for parity", self.task)


def generate(params: Params, seed: int) -> Splits:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(params.num_samples, params.seq_len))
    y = x.sum(axis=1) % 2
    train, val, test = random_split(x, y, params.val_fraction, params.test_fraction, rng)
    classes = ["even", "odd"] if params.task == "classification" else []
    info = DatasetInfo(NAME, task=params.task, classes=classes)
    return Splits(train, val, test, info)
