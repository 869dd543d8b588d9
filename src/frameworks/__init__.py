"""The framework registry: each name's module, imported only when the framework is looked up, so
TensorFlow loads only for keras and torch only for torch.

Adding a framework is one module here (defining `BACKEND`, a class that satisfies
`src.frameworks.base.Backend`) plus conf/framework/<name>.yaml; every list of framework names (the
config's choices, the DVC stages, error messages) comes from `FRAMEWORKS`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from src.frameworks.base import Backend

# name → module that defines BACKEND. Nothing else is imported here: the config schema reads the names.
FRAMEWORKS: dict[str, str] = {
    "torch": "src.frameworks.torch",
    "numpy": "src.frameworks.numpy",
    "keras": "src.frameworks.keras",
}


def backend_class(name: str) -> type[Backend]:
    """The backend class for `framework.name`; importing it is what loads the framework."""
    return importlib.import_module(FRAMEWORKS[name]).BACKEND


__all__ = ["FRAMEWORKS", "backend_class"]
