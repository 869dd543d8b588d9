"""Frameworks are looked up by name and imported inside the lookup, so TensorFlow loads only for keras."""

from __future__ import annotations

import importlib

from src.frameworks.base import Backend, FitResult, ModelSpec


def backend_class(name: str) -> type[Backend]:
    """The backend class for `framework.name`; importing it is what loads the framework."""
    return importlib.import_module(f"src.frameworks.{name}").BACKEND


__all__ = ["Backend", "FitResult", "ModelSpec", "backend_class"]
