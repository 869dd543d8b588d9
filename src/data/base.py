"""What every generator returns, and the windowing and splitting they share.

Arrays are float32, inputs shaped (samples, timesteps, features) and targets (samples, outputs),
the layout all three frameworks take with `batch_first`. What a target holds depends on the task
(`DatasetInfo.task`, see src/tasks/): values to regress, one class index per sequence (samples, 1),
or, for a language model, the next token id at every step (samples, timesteps), its inputs being
token ids (samples, timesteps, 1).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import ClassVar
from pathlib import Path

import numpy as np

from src.errors import require, require_fraction
from src.errors import UserError, reading


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.ndim != 3 or self.y.ndim != 2 or len(self.x) != len(self.y):
            raise ValueError(f"bad split shapes: x {self.x.shape}, y {self.y.shape}")

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    # The task's name in src/tasks/: resolved once into its Task object by whoever trains or scores.
    task: str = "regression"
    # The input channel that the target continues: what the `last` baseline repeats.
    target_feature: int = 0
    # What a classifier tells apart, or a language model's vocabulary (index = class = token id).
    classes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split
    info: DatasetInfo

    def items(self) -> list[tuple[str, Split]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]

    @property
    def num_features(self) -> int:
        return int(self.train.x.shape[2])

    @property
    def num_outputs(self) -> int:
        return int(self.train.y.shape[1])

    def save(self, path: Path) -> None:
        """One .npz holding every split and the info as JSON: no pickle needed to read it back."""
        arrays = {f"{name}_{part}": getattr(split, part) for name, split in self.items() for part in ("x", "y")}
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.savez(handle, info=np.array(json.dumps(asdict(self.info))), **arrays)

    @classmethod
    def load(cls, path: Path) -> "Splits":
        with reading(path, "data file", " (run the generate stage: dvc repro generate)"):
            with np.load(path, allow_pickle=False) as saved:
                splits = {name: Split(saved[f"{name}_x"], saved[f"{name}_y"]) for name in ("train", "val", "test")}
                info = DatasetInfo(**json.loads(str(saved["info"])))
        return cls(**splits, info=info)

    def test_overlap(self) -> float:
        """The fraction of test inputs that also occur, exactly, among the training inputs: accuracy on
        those can be memory. 0 for every dataset here (parity keeps its held-out strings apart)."""
        if not len(self.test):
            return 0.0
        seen = {np.ascontiguousarray(row).tobytes() for row in self.train.x}
        return sum(np.ascontiguousarray(row).tobytes() in seen for row in self.test.x) / len(self.test)

    def digest(self) -> str:
        """SHA-256 of every array's bytes and shape: equal digests mean equal data."""
        hasher = hashlib.sha256()
        for _, split in self.items():
            for array in (split.x, split.y):
                hasher.update(str(array.shape).encode())
                hasher.update(np.ascontiguousarray(array).tobytes())
        return hasher.hexdigest()


@dataclass
class DatasetParams:
    """What every dataset's schema has: its generator's name. A dataset without a `standardize` key (its
    inputs are token ids) is never standardised; one with the key overrides this class-level default."""

    name: str = "?"
    standardize: ClassVar[bool] = False


@dataclass
class SplitParams(DatasetParams):
    """Fields every randomly split dataset shares; a dataset's schema extends this."""

    num_samples: int = 1000
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    # Fit mean and standard deviation on the training split only; metrics stay in original units.
    standardize: bool = True  # type: ignore[misc]

    def __post_init__(self) -> None:
        require(self.num_samples >= 3, "dataset.num_samples", "must be an integer >= 3", self.num_samples)
        check_split_fractions(self.val_fraction, self.test_fraction)


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """Both held-out fractions in (0, 1) with room left for training."""
    require_fraction(val_fraction, "dataset.val_fraction")
    require_fraction(test_fraction, "dataset.test_fraction")
    for key, value in (("dataset.val_fraction", val_fraction), ("dataset.test_fraction", test_fraction)):
        require(value > 0, key, "must be > 0: every split needs samples", value)
    require(val_fraction + test_fraction < 1, "dataset.val_fraction + dataset.test_fraction",
            "must be < 1, to leave samples for training", round(val_fraction + test_fraction, 6))


def as_split(x: np.ndarray, y: np.ndarray) -> Split:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    y = np.asarray(y, dtype=np.float32)
    return Split(x, y[:, None] if y.ndim == 1 else y)


def split_sizes(count: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Train, val and test counts with at least one sample in each."""
    num_val = max(1, round(count * val_fraction))
    num_test = max(1, round(count * test_fraction))
    num_train = count - num_val - num_test
    if num_train < 1:
        raise UserError(f"dataset.num_samples={count} is invalid: too few to split into train, val and test "
                        f"with these fractions")
    return num_train, num_val, num_test


def random_split(x: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float,
                 rng: np.random.Generator) -> tuple[Split, Split, Split]:
    num_train, num_val, _ = split_sizes(len(x), val_fraction, test_fraction)
    order = rng.permutation(len(x))
    parts = np.split(order, [num_train, num_train + num_val])
    return tuple(as_split(x[part], y[part]) for part in parts)  # type: ignore[return-value]


def holdout(x: np.ndarray, y: np.ndarray, fraction: float,
            rng: np.random.Generator) -> tuple[Split, Split]:
    """A random `fraction` (at least one sample unless it is 0) held out: returns (rest, held out)."""
    num_held = held_count(len(x), fraction)
    order = rng.permutation(len(x))
    rest, held = order[num_held:], order[:num_held]
    return as_split(x[rest], y[rest]), as_split(x[held], y[held])


def holdout_last(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[Split, Split]:
    """The last `fraction` of the samples held out, in order: validation past the range trained on."""
    cut = len(x) - held_count(len(x), fraction)
    return as_split(x[:cut], y[:cut]), as_split(x[cut:], y[cut:])


def held_count(count: int, fraction: float) -> int:
    """How many of `count` samples a `fraction` holds out: at least one unless the fraction is 0."""
    return max(1, round(count * fraction)) if fraction > 0 else 0


def chronological_split(x: np.ndarray, y: np.ndarray, val_fraction: float,
                        test_fraction: float) -> tuple[Split, Split, Split]:
    """Earliest windows train, the next validate, the latest test: no look-ahead."""
    num_train, num_val, _ = split_sizes(len(x), val_fraction, test_fraction)
    bounds = [num_train, num_train + num_val]
    return tuple(as_split(xs, ys) for xs, ys in zip(np.split(x, bounds), np.split(y, bounds)))  # type: ignore[return-value]


def sliding_windows(series: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of `seq_len` steps of a 1-D series, with the value right after it as target."""
    series = np.asarray(series, dtype=np.float64)
    count = len(series) - seq_len
    if count < 1:
        raise ValueError(f"a series of {len(series)} values has no window of {seq_len} steps")
    x = np.lib.stride_tricks.sliding_window_view(series[:-1], seq_len)[:count]
    return x[:, :, None], series[seq_len:, None]
