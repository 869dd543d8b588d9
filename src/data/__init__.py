"""Dataset generators, one module each, found by name.

A module here that defines NAME, a `Params` dataclass (its schema) and `generate(params, seed)`
returning `Splits` is a dataset: adding one is this one new file plus conf/dataset/<name>.yaml.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from src.data.base import Split, Splits

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
    return DATASETS[params.name].generate(params, seed)  # type: ignore[attr-defined]


__all__ = ["DATASETS", "Split", "Splits", "generate"]
