"""The epoch loop every framework shares: shuffled batches, the divergence check, early stopping with
the best weights restored, checkpoints, and the progress bar. A framework supplies its steps
(`TrainingSteps`); what happens between epochs is decided here, once.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from src.config import TrainerConfig
from src.errors import TrainingDiverged, UserError
from src.frameworks.checkpoint import Checkpoint, EpochResult

log = logging.getLogger(__name__)

EpochCallback = Callable[[EpochResult], None]


@dataclass(frozen=True)
class FitResult:
    history: list[EpochResult]
    best_epoch: int
    stopped_early: bool

    @property
    def best(self) -> EpochResult:
        return self.history[self.best_epoch - 1]


def shuffled_batches(count: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's sample indices: a fresh permutation cut into batches (the last may be smaller)."""
    order = rng.permutation(count)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


@dataclass(frozen=True)
class Checkpointing:
    """Where a fit saves its state, how often (epochs), and the checkpoint it continues from."""

    path: Path | None = None
    every: int = 0
    resume_from: Checkpoint | None = None
    # Where to save when `path` is not known yet at the start (a run created while training starts,
    # src/training_process.py): asked when the first checkpoint is due.
    locate: Callable[[], Path] | None = None

    def due(self, epoch: int, last: bool) -> bool:
        """Every `every` epochs and after the last one, so the trained weights are never only in memory."""
        saves = self.path is not None or self.locate is not None
        return saves and self.every > 0 and (last or epoch % self.every == 0)

    def target(self) -> Path:
        if self.path is not None:
            return self.path
        assert self.locate is not None, "due() is only true with a path or a way to find it"
        return self.locate()


class TrainingSteps(NamedTuple):
    """What a framework supplies to the shared epoch loop."""

    train_epoch: Callable[[], float]  # one pass over shuffled batches; the mean training loss
    val_loss: Callable[[], float]
    state: Callable[[], dict[str, np.ndarray]]  # weights, optimiser and RNG states: enough to continue exactly
    load_state: Callable[[dict[str, np.ndarray]], None]


class EpochMonitor:
    """Per-epoch bookkeeping: divergence check, callback, progress bar, early stopping, best weights.

    `end_epoch` is called once per epoch with the losses and a function that snapshots the weights
    (canonical layout); it returns True when training should stop. `best_state` is the snapshot to restore.
    """

    def __init__(self, trainer: TrainerConfig, on_epoch: EpochCallback, resume_from: Checkpoint | None = None) -> None:
        self.trainer = trainer
        self.on_epoch = on_epoch
        self.history: list[EpochResult] = []
        self.best_state: Any = None
        self.best_epoch = 0
        self.stopped_early = False
        self._best_val = math.inf
        self._bar = _progress_bar(trainer.epochs)
        if resume_from is not None:
            self.history = list(resume_from.history)
            self.best_epoch, self._best_val = resume_from.best_epoch, resume_from.best_val
            self.best_state = resume_from.best_weights or None
            self.stopped_early = resume_from.finished and resume_from.epoch < trainer.epochs
            for result in self.history:  # the tracker logs what it lacks (epochs lost in a kill)
                self.on_epoch(result)
            if self._bar is not None:
                self._bar.update(len(self.history))

    @property
    def epoch(self) -> int:
        return len(self.history)

    def end_epoch(self, train_loss: float, val_loss: float, seconds: float, snapshot: Callable[[], Any]) -> bool:
        epoch = len(self.history) + 1
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            self.close()
            raise TrainingDiverged(
                f"loss became {train_loss if not math.isfinite(train_loss) else val_loss} at epoch {epoch}: "
                f"lower trainer.lr or set trainer.grad_clip"
            )
        result = EpochResult(epoch, float(train_loss), float(val_loss), float(seconds))
        self.history.append(result)
        self.on_epoch(result)
        if val_loss < self._best_val:
            self._best_val, self.best_epoch, self.best_state = val_loss, epoch, snapshot()
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(train_loss=f"{train_loss:.4g}", val_loss=f"{val_loss:.4g}")
        log.debug("epoch %d: train_loss %.6g val_loss %.6g (%.2fs)", epoch, train_loss, val_loss, seconds)
        patience = self.trainer.patience
        self.stopped_early = patience > 0 and epoch - self.best_epoch >= patience and epoch < self.trainer.epochs
        return self.stopped_early

    def checkpoint(self, framework: str, state: dict[str, np.ndarray], finished: bool) -> Checkpoint:
        return Checkpoint(
            framework,
            self.epoch,
            list(self.history),
            self.best_epoch,
            self._best_val,
            dict(self.best_state or {}),
            state,
            finished,
        )

    def result(self) -> FitResult:
        self.close()
        return FitResult(list(self.history), self.best_epoch, self.stopped_early)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def run_epochs(
    framework: str,
    trainer: TrainerConfig,
    on_epoch: EpochCallback,
    steps: TrainingSteps,
    get_weights: Callable[[], dict[str, np.ndarray]],
    set_weights: Callable[[dict[str, np.ndarray]], None],
    checkpointing: Checkpointing | None = None,
) -> FitResult:
    """The epoch loop every framework shares: train, validate, check, checkpoint, stop early, restore
    the best weights. After a resume it continues from the checkpoint's epoch with its exact state."""
    checkpointing = checkpointing or Checkpointing()
    resume_from = checkpointing.resume_from
    if resume_from is not None:
        if resume_from.framework != framework:
            raise UserError(f"the checkpoint to resume is a {resume_from.framework} checkpoint, not {framework}")
        steps.load_state(resume_from.state)
    monitor = EpochMonitor(trainer, on_epoch, resume_from)
    finished = resume_from is not None and resume_from.finished
    try:
        while not finished:
            start = time.perf_counter()
            train_loss = steps.train_epoch()
            current_val_loss = steps.val_loss()
            stop = monitor.end_epoch(train_loss, current_val_loss, time.perf_counter() - start, get_weights)
            finished = stop or monitor.epoch >= trainer.epochs
            if checkpointing.due(monitor.epoch, finished):
                monitor.checkpoint(framework, steps.state(), finished).save(checkpointing.target())
    finally:
        monitor.close()
    if monitor.best_state is not None:
        set_weights(monitor.best_state)
    return monitor.result()


def _progress_bar(total: int) -> Any:
    """A tqdm bar on an interactive terminal; nothing when output goes to a file or a pipe."""
    if not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="epoch", leave=False, dynamic_ncols=True)
