"""Real data: yearly mean sunspot numbers 1700-2008, as shipped with statsmodels (no download).

Windows of `seq_len` years forecast the next year; the split is chronological (train on the
earliest years, test on the latest) so that no future value leaks into training.
"""

from dataclasses import dataclass

from src.errors import require
from src.data.base import DatasetInfo, DatasetParams, check_split_fractions, Splits, chronological_split, sliding_windows

NAME = "sunspots"


@dataclass
class Params(DatasetParams):
    name: str = NAME
    seq_len: int = 12
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    standardize: bool = True  # type: ignore[misc]

    def __post_init__(self) -> None:
        require(1 <= self.seq_len <= 200, "dataset.seq_len", "must be an integer in [1, 200]", self.seq_len)
        check_split_fractions(self.val_fraction, self.test_fraction)


def generate(params: Params, seed: int) -> Splits:
    from statsmodels.datasets import sunspots  # imported here: only this dataset needs it

    frame = sunspots.load_pandas().data
    x, y = sliding_windows(frame["SUNACTIVITY"].to_numpy(), params.seq_len)
    train, val, test = chronological_split(x, y, params.val_fraction, params.test_fraction)
    info = DatasetInfo(NAME)
    return Splits(train, val, test, info)
