"""The backend interface, and the small helpers every framework's predict and threads share.

A backend builds a recurrent network from a `ModelSpec` (src/frameworks/spec.py), fits it through the
shared epoch loop (src/frameworks/training.py), predicts, saves and loads. The experiment runner only
sees this interface, so it never knows which framework it drives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np

from src.config import TrainerConfig
from src.data.base import Split
from src.frameworks.spec import ModelSpec
from src.frameworks.training import Checkpointing, EpochCallback, FitResult


class Backend(Protocol):
    """What the experiment runner needs from a framework."""

    name: str
    device: str
    spec: ModelSpec

    @staticmethod
    def check_device(device: str) -> None:
        """Raise UserError for a `framework.device` this machine cannot give, before any run starts."""

    @classmethod
    def build(cls, spec: ModelSpec, seed: int, device: str = "auto", init: str = "keras") -> Backend:
        """A network with the initial weights of `init` (src/frameworks/initialization.py) drawn from `seed`."""

    def fit(
        self,
        train: Split,
        val: Split,
        trainer: TrainerConfig,
        on_epoch: EpochCallback,
        checkpointing: Checkpointing | None = None,
    ) -> FitResult:
        """Train on standardised data with `spec.loss`; `on_epoch` sees every epoch's losses as they happen
        (after a resume, the checkpoint's earlier epochs first). Cross-entropy targets are class (token) ids
        stored as floats: (samples, 1) or (samples, steps)."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 network outputs for inputs shaped (samples, steps, spec.input_width): values (regression)
        or logits, shaped (samples, outputs), or (samples, steps, outputs) when `spec.every_step`."""

    def save(self, directory: Path) -> None:
        """Weights and spec into `directory`, in a format that loads without unpickling code."""

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> Backend: ...

    def get_weights(self) -> dict[str, np.ndarray]:
        """All parameters in the canonical layout (src/frameworks/spec.py), as float32 arrays."""

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load parameters given in the canonical layout."""

    @staticmethod
    def requirements() -> list[str]:
        """pip requirements of a saved model beyond rnnlab's own (for the MLflow model)."""


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Cap the BLAS and OpenMP thread pools loaded in this process (NumPy's, torch's) for a block;
    0 leaves them as they are. The previous limits come back afterwards."""
    if count <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=count):
        yield


PREDICT_BATCH = 4096


def predict_in_batches(
    forward: Callable[[np.ndarray], np.ndarray], x: np.ndarray, spec: ModelSpec, batch: int = PREDICT_BATCH
) -> np.ndarray:
    """float32 outputs of `forward` over `x` in slices of `batch` rows, so memory stays bounded."""
    parts = [np.asarray(forward(x[start : start + batch])) for start in range(0, len(x), batch)]
    return np.concatenate(parts).astype(np.float32) if parts else spec.no_outputs(x.shape[1])


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a saved .npz file, never unpickling code."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def as_float32(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)
