"""Training checkpoints: everything needed to continue a fit exactly where it stopped.

A checkpoint is one `.npz` file (no pickle: `np.load(..., allow_pickle=False)` reads it) holding
  state/<name>  the backend's own training state: weights, optimiser moments, RNG states, as arrays
  best/<name>   the best epoch's weights in the canonical layout (what early stopping restores)
  meta          JSON text: format, framework, epochs done, per-epoch history, best epoch and loss,
                whether training already ended (stopped early or ran all epochs)
It is written to a temporary file in the same folder and renamed over the old one, so a kill at any
moment leaves either the previous checkpoint or the new one, never half of one.

Nothing here knows about MLflow or Hydra: the experiment decides where checkpoints go.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil

from src.errors import UserError, interrupts_deferred

FORMAT = "rnnlab-checkpoint-1"


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    seconds: float


@dataclass
class Checkpoint:
    """The state of a fit after `epoch` epochs."""

    framework: str
    epoch: int
    history: list[EpochResult]
    best_epoch: int
    best_val: float
    best_weights: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    finished: bool = False  # training ended (all epochs, or early stopping): only evaluation is left
    extra: dict[str, object] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write atomically: a temporary file beside `path`, flushed to disk, then renamed over it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "framework": self.framework,
            "epoch": self.epoch,
            "history": [asdict(result) for result in self.history],
            "best_epoch": self.best_epoch,
            "best_val": self.best_val,
            "finished": self.finished,
            "extra": self.extra,
        }
        arrays = {f"state/{name}": value for name, value in self.state.items()}
        arrays.update({f"best/{name}": value for name, value in self.best_weights.items()})
        arrays["meta"] = np.array(json.dumps(meta))
        with interrupts_deferred():  # an interrupt lands after the write, not inside the zip
            prefix = f".{path.name}.{os.getpid()}."  # its writer, for `remove_stale_temporaries`
            descriptor, temporary = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stubs
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        remove_stale_temporaries(path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            with np.load(path, allow_pickle=False) as archive:
                meta = json.loads(str(archive["meta"]))
                state = {
                    name.removeprefix("state/"): archive[name] for name in archive.files if name.startswith("state/")
                }
                best = {name.removeprefix("best/"): archive[name] for name in archive.files if name.startswith("best/")}
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            history = [EpochResult(**result) for result in meta["history"]]
            return cls(
                meta["framework"],
                int(meta["epoch"]),
                history,
                int(meta["best_epoch"]),
                float(meta["best_val"]),
                best,
                state,
                bool(meta["finished"]),
                dict(meta.get("extra", {})),
            )
        except FileNotFoundError:
            raise UserError(f"checkpoint missing: {path}") from None
        except Exception as error:
            raise UserError(f"checkpoint corrupt: {path} ({type(error).__name__}: {error})") from None


def remove_stale_temporaries(path: Path) -> None:
    """Temporary files of earlier writes of `path` that a kill left behind (SIGKILL after the training
    process's stop grace, kill -9, OOM): each is named after its writer's process id, and one whose
    writer is gone is removed. A living writer's is left alone (two processes writing one path, which a
    run's claim should prevent, must not delete each other's file half-way)."""
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        writer = stale.name.removeprefix(prefix).split(".", 1)[0]
        if not (writer.isdigit() and psutil.pid_exists(int(writer))):
            stale.unlink(missing_ok=True)


def rng_state(generator: np.random.Generator) -> np.ndarray:
    """A NumPy generator's exact state as a text array (its bit generator's state is a dict of ints)."""
    return np.array(json.dumps(generator.bit_generator.state))


def set_rng_state(generator: np.random.Generator, state: np.ndarray) -> None:
    generator.bit_generator.state = json.loads(str(state))
