"""Dataset generators, one module each, found by name.

A module here that defines NAME, a `Params` dataclass (its schema) and `generate(params, seed)`
returning `Splits` is a dataset: adding one is this one new file plus conf/dataset/<name>.yaml.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from src.data.base import Split, Splits
from src.errors import UserError

_HELPERS = {"base", "scaling"}


def _discover() -> dict[str, ModuleType]:
    found = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in _HELPERS or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        found[module.NAME] = module
    return dict(sorted(found.items()))


DATASETS: dict[str, ModuleType] = _discover()


def generate(params: object, seed: int) -> Splits:
    """Data for a checked dataset config (an instance of one generator's `Params`)."""
    module = DATASETS.get(params.name)  # type: ignore[attr-defined]
    if module is None or not isinstance(params, module.Params):
        raise UserError(f"dataset.name={params.name!r} is invalid: it names the generator of the chosen dataset; "  # type: ignore[attr-defined]
                        f"choose another dataset with dataset=<name> ({', '.join(DATASETS)})")
    return module.generate(params, seed)


__all__ = ["DATASETS", "Split", "Splits", "generate"]
