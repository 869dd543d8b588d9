"""The dataset registry: one generator module per dataset, each listed in `DATASETS` by its name.

A dataset is a module that satisfies `Dataset`: NAME, a `Params` dataclass (its schema, registered
with Hydra by src/settings.py) and `generate(params, seed)` returning `Splits`. Adding one is that
module plus its line below and conf/dataset/<name>.yaml.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from src.data import adding, chars, next_number, parity, sine, sine_class, sum, sunspots
from src.data.base import Split, Splits
from src.errors import UserError


class Dataset(Protocol):
    NAME: str
    Params: type[Any]

    def generate(self, params: Any, seed: int) -> Splits: ...


DATASETS: dict[str, Dataset] = {
    module.NAME: module for module in (adding, chars, next_number, parity, sine, sine_class, sum, sunspots)
}


def generate(params: object, seed: int) -> Splits:
    """Data for a checked dataset config (an instance of one generator's `Params`)."""
    module = DATASETS.get(params.name)  # type: ignore[attr-defined]
    if module is None or not isinstance(params, module.Params):
        raise UserError(f"dataset.name={params.name!r} is invalid: it names the generator of the chosen dataset; "  # type: ignore[attr-defined]
                        f"choose another dataset with dataset=<name> ({', '.join(DATASETS)})")
    check_size(params)
    splits = module.generate(params, seed)
    check_finite(splits, params)
    return splits


# Inputs of more values than this (float32: 1.6 GB) are refused before generating them.
MAX_INPUT_VALUES = 400_000_000


def check_size(params: object) -> None:
    """Refuse, by name, a number of samples times steps that no machine here could hold."""
    samples, steps = getattr(params, "num_samples", None), getattr(params, "seq_len", None)
    if isinstance(samples, int) and isinstance(steps, int) and samples * steps > MAX_INPUT_VALUES:
        raise UserError(f"dataset.num_samples={samples} with dataset.seq_len={steps} is invalid: "
                        f"{samples * steps} input values exceed the limit of {MAX_INPUT_VALUES}")


def check_finite(splits: Splits, params: object) -> None:
    """Data with inf or NaN would surface much later as a diverging loss that blames the learning rate."""
    for name, split in splits.items():
        for part in (split.x, split.y):
            if not np.isfinite(part).all():
                numbers = {key: value for key, value in vars(params).items()
                           if isinstance(value, (int, float)) and not isinstance(value, bool)}
                raise UserError(f"dataset {splits.info.name} produced values that are not finite (inf or NaN) in its "
                                f"{name} split: check its settings ({', '.join(f'dataset.{k}={v}' for k, v in numbers.items())})")


__all__ = ["DATASETS", "Dataset", "Split", "Splits", "generate"]
