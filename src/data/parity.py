"""Classification: is the number of ones in a binary sequence odd? `seq_len` sets the difficulty.

Every input bit matters to the label, and flipping any one flips it: no linear function of the
window (the logistic baseline) does better than chance, and a recurrent network must carry one bit
through every step. `dataset.task=regression` asks for the same bit as a number (MSE instead of
cross-entropy), to compare how the two losses learn it.

Only 2**seq_len strings exist, so drawing samples at random would put most test strings in the
training split too (at 8 bits, 297 of 300), and accuracy would measure memory. The validation and
test strings are therefore distinct strings that the training split never holds, their fractions
taken of the strings there can be (at 8 bits, 15% of 256); training draws the other samples from the
strings left (each once while there are enough, with repeats when there are not).
"""

from dataclasses import dataclass

import numpy as np

from src.errors import require
from src.data.base import DatasetInfo, SplitParams, Splits, as_split, split_sizes

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
        # Validation and test strings are held out of training: 2 bits give 4 strings, the fewest that
        # leave one for each split and two to train on.
        require(self.seq_len >= 2, "dataset.seq_len", "must be an integer >= 2 (parity holds distinct strings out)",
                self.seq_len)
        require(self.task in TASKS, "dataset.task", f"must be one of {', '.join(TASKS)} for parity", self.task)


def generate(params: Params, seed: int) -> Splits:
    rng = np.random.default_rng(seed)
    # The held-out fractions are of the distinct strings there can be: at 8 bits 15% of 256, not of 2000.
    distinct = min(params.num_samples, 2**min(params.seq_len, 62))
    _, num_val, num_test = split_sizes(distinct, params.val_fraction, params.test_fraction)
    held_out = num_val + num_test
    held, train = distinct_strings(params.seq_len, held_out, params.num_samples - held_out, rng)
    x = np.concatenate([held, train])
    y = x.sum(axis=1) % 2
    parts = np.split(np.arange(len(x)), [num_val, held_out])
    val, test, train_split = (as_split(x[part], y[part]) for part in parts)
    classes = ["even", "odd"] if params.task == "classification" else []
    info = DatasetInfo(NAME, task=params.task, classes=classes)
    return Splits(train_split, val, test, info)


def distinct_strings(length: int, held_out: int, train: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`held_out` distinct bit strings, and `train` strings none of which is among them (distinct too
    while 2**length allows, else drawn with repeats from the strings left)."""
    if length <= 24:  # every string can be listed: a permutation of all of them
        codes = rng.permutation(2**length)
        held, rest = codes[:held_out], codes[held_out:]
        train_codes = rest[:train] if len(rest) >= train else rng.choice(rest, size=train)
        return bits(held, length), bits(train_codes, length)
    drawn = np.unique(rng.integers(0, 2, size=(2 * (held_out + train), length), dtype=np.int8), axis=0)
    drawn = drawn[rng.permutation(len(drawn))]  # collisions are rare: with 25+ bits, nearly all are new
    require(len(drawn) >= held_out + train, "dataset.num_samples", "too many for distinct strings", held_out + train)
    return drawn[:held_out], drawn[held_out : held_out + train]


def bits(codes: np.ndarray, length: int) -> np.ndarray:
    """Each integer code as `length` bits, least significant first: (codes, length) of 0/1."""
    return ((np.asarray(codes)[:, None] >> np.arange(length)) & 1).astype(np.int8)
