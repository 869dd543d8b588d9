"""Real data: yearly mean sunspot numbers 1700-2008, as shipped with statsmodels (no download).

Windows of `seq_len` years forecast the next year; the split is chronological (train on the
earliest years, test on the latest) so that no future value leaks into training.
"""

from dataclasses import dataclass

from src.config import require, require_fraction
from src.data.base import DatasetInfo, Splits, chronological_split, sliding_windows

NAME = "sunspots"


@dataclass
class Params:
    name: str = NAME
    seq_len: int = 12
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    standardize: bool = True

    def __post_init__(self) -> None:
        require(1 <= self.seq_len <= 200, "dataset.seq_len", "must be an integer in [1, 200]", self.seq_len)
        require_fraction(self.val_fraction, "dataset.val_fraction")
        require_fraction(self.test_fraction, "dataset.test_fraction")
        require(self.val_fraction > 0 and self.test_fraction > 0 and self.val_fraction + self.test_fraction < 1,
                "dataset.val_fraction", "val_fraction and test_fraction must be > 0 with a sum < 1",
                self.val_fraction)


def generate(params: Params, seed: int) -> Splits:
    from statsmodels.datasets import sunspots  # imported here: only this dataset needs it

    frame = sunspots.load_pandas().data
    x, y = sliding_windows(frame["SUNACTIVITY"].to_numpy(), params.seq_len)
    train, val, test = chronological_split(x, y, params.val_fraction, params.test_fraction)
    years = frame["YEAR"].astype(int).to_numpy()[params.seq_len:]
    info = DatasetInfo(NAME, f"yearly sunspot number {years[0]}-{years[-1]} from the previous {params.seq_len} years",
                       extra={"first_test_year": int(years[len(train) + len(val)])})
    return Splits(train, val, test, info)
