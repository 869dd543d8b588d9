"""Classification: which waveform is this, a sine, a square or a sawtooth wave?

Each sequence is one of the three shapes (equally likely), with a random period of `min_period` to
`max_period` steps, a random phase and Gaussian noise of standard deviation `noise`. The period and
phase vary, so the shape has to be recognised wherever it starts.
"""

from dataclasses import dataclass

import numpy as np

from src.errors import require
from src.data.base import DatasetInfo, SplitParams, Splits, random_split

NAME = "sine_class"
CLASSES = ["sine", "square", "sawtooth"]


@dataclass
class Params(SplitParams):
    name: str = NAME
    seq_len: int = 40
    num_samples: int = 1500
    min_period: float = 8.0
    max_period: float = 24.0
    noise: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.seq_len >= 2, "dataset.seq_len", "must be an integer >= 2", self.seq_len)
        require(self.min_period >= 2, "dataset.min_period", "must be >= 2 steps", self.min_period)
        require(self.max_period >= self.min_period, "dataset.max_period", "must be >= dataset.min_period",
                self.max_period)
        require(self.noise >= 0, "dataset.noise", "must be >= 0", self.noise)


def waves(labels: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """The waveform of each label at the given positions in cycles (one cycle = one period), in [-1, 1]."""
    fraction = cycles % 1.0
    shapes = np.stack([np.sin(2 * np.pi * cycles),              # sine
                       np.where(fraction < 0.5, 1.0, -1.0),      # square
                       2 * fraction - 1])                        # sawtooth
    return np.take_along_axis(shapes, labels[None, :, None], axis=0)[0]


def generate(params: Params, seed: int) -> Splits:
    rng = np.random.default_rng(seed)
    count = params.num_samples
    labels = rng.integers(0, len(CLASSES), size=count)
    periods = rng.uniform(params.min_period, params.max_period, size=(count, 1))
    phases = rng.uniform(0, 1, size=(count, 1))
    cycles = np.arange(params.seq_len) / periods + phases
    x = waves(labels, cycles) + rng.normal(0, params.noise, size=cycles.shape)
    train, val, test = random_split(x, labels, params.val_fraction, params.test_fraction, rng)
    info = DatasetInfo(NAME, task="classification", classes=list(CLASSES))
    return Splits(train, val, test, info)
