"""The backend interface, and the training bookkeeping every framework shares.

A backend builds a recurrent network from a `ModelSpec`, fits it with a per-epoch callback,
predicts, saves and loads. The experiment runner only sees this interface, so it never knows which
framework it drives. What is the same for all frameworks (shuffled batches, the divergence check,
early stopping with the best weights restored, the progress bar) lives here once.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Protocol

import numpy as np

from src.config import ModelConfig, TrainerConfig
from src.data.base import Split
from src.errors import TrainingDiverged, UserError
from src.frameworks.checkpoint import Checkpoint, EpochResult

log = logging.getLogger(__name__)

SPEC_FILE = "spec.json"

CANONICAL_LAYOUT = """
Weights travel between frameworks in one canonical layout: PyTorch's state_dict names and shapes.
For layer k (0-based) of a cell with G gates (rnn 1, lstm 4, gru 3) and hidden size H:
  recurrent.weight_ih_l{k}  (G*H, inputs)   inputs = num_features for k = 0, else H
  recurrent.weight_hh_l{k}  (G*H, H)
  recurrent.bias_ih_l{k}    (G*H,)
  recurrent.bias_hh_l{k}    (G*H,)
  head.weight               (num_outputs, H)
  head.bias                 (num_outputs,)
Gate order along the G*H axis: LSTM (i, f, g, o); GRU (r, z, n), reset-after:
  n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h.
The task (ModelSpec.task) adds no weights; it decides what the same weights mean:
  regression      inputs = features; the head reads the last step; outputs = values      (loss: MSE)
  classification  inputs = features; the head reads the last step; outputs = class logits (cross-entropy)
  language_model  inputs = vocabulary size: token ids enter one-hot encoded, so column j of
                  weight_ih_l0 is token j's input vector; the head reads every step;
                  outputs = vocabulary size, the next token's logits                      (cross-entropy)
"""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network's shape: plain data, saved next to its weights."""

    cell: str
    hidden_size: int
    num_layers: int
    activation: str
    dropout: float
    num_features: int
    num_outputs: int
    # regression, classification or language_model (src/tasks/): which head and loss, see CANONICAL_LAYOUT.
    task: str = "regression"

    @classmethod
    def from_config(cls, model: ModelConfig, num_features: int, num_outputs: int,
                    task: str = "regression") -> "ModelSpec":
        return cls(model.cell.value, model.hidden_size, model.num_layers, model.activation.value,
                   model.dropout, num_features, num_outputs, task)

    @property
    def loss(self) -> str:
        """"mse" for regression; "cross_entropy" (softmax over the outputs, mean over targets) otherwise."""
        return "mse" if self.task == "regression" else "cross_entropy"

    @property
    def token_inputs(self) -> bool:
        """Inputs are token ids (samples, steps, 1), one-hot encoded over num_features before layer 0."""
        return self.task == "language_model"

    @property
    def every_step(self) -> bool:
        """The head reads every step's state (outputs shaped (samples, steps, num_outputs)), not the last only."""
        return self.task == "language_model"

    @property
    def input_width(self) -> int:
        """The last axis of the arrays a backend is given: 1 token id, or the features."""
        return 1 if self.token_inputs else self.num_features

    def no_outputs(self, steps: int) -> np.ndarray:
        """What predict returns for zero samples."""
        shape = (0, steps, self.num_outputs) if self.every_step else (0, self.num_outputs)
        return np.zeros(shape, np.float32)

    def save(self, directory: Path) -> None:
        (directory / SPEC_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> "ModelSpec":
        path = directory / SPEC_FILE
        try:
            spec = cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise UserError(f"model file missing: {path}") from None
        except (json.JSONDecodeError, TypeError) as error:
            raise UserError(f"model file corrupt: {path} ({error})") from None
        problem = spec.problem()
        if problem:
            raise UserError(f"model file corrupt: {path} ({problem})")
        return spec

    def problem(self) -> str | None:
        """What makes this spec impossible to build, or None: a spec read from a file is checked first."""
        from src.config import MAX_HIDDEN_SIZE, MAX_LAYERS

        checks = [(self.cell in ("rnn", "lstm", "gru"), f"cell={self.cell!r}"),
                  (isinstance(self.hidden_size, int) and 1 <= self.hidden_size <= MAX_HIDDEN_SIZE,
                   f"hidden_size={self.hidden_size!r}"),
                  (isinstance(self.num_layers, int) and 1 <= self.num_layers <= MAX_LAYERS,
                   f"num_layers={self.num_layers!r}"),
                  (self.activation in ("tanh", "relu"), f"activation={self.activation!r}"),
                  (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1, f"dropout={self.dropout!r}"),
                  (isinstance(self.num_features, int) and self.num_features >= 1, f"num_features={self.num_features!r}"),
                  (isinstance(self.num_outputs, int) and self.num_outputs >= 1, f"num_outputs={self.num_outputs!r}"),
                  (self.task in ("regression", "classification", "language_model"), f"task={self.task!r}")]
        return next((f"{what} is not possible" for ok, what in checks if not ok), None)


@dataclass(frozen=True)
class FitResult:
    history: list[EpochResult]
    best_epoch: int
    stopped_early: bool

    @property
    def best(self) -> EpochResult:
        return self.history[self.best_epoch - 1]


EpochCallback = Callable[[EpochResult], None]


class Backend(Protocol):
    """What the experiment runner needs from a framework."""

    name: str
    device: str
    spec: ModelSpec

    @staticmethod
    def check_device(device: str) -> None:
        """Raise UserError for a `framework.device` this machine cannot give, before any run starts."""

    @classmethod
    def build(cls, spec: ModelSpec, seed: int, device: str = "auto") -> "Backend": ...

    def fit(self, train: Split, val: Split, trainer: TrainerConfig, on_epoch: EpochCallback,
            checkpointing: "Checkpointing | None" = None) -> FitResult:
        """Train on standardised data with `spec.loss`; `on_epoch` sees every epoch's losses as they happen
        (after a resume, the checkpoint's earlier epochs first). Cross-entropy targets are class (token) ids
        stored as floats: (samples, 1) or (samples, steps)."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """float32 network outputs for inputs shaped (samples, steps, spec.input_width): values (regression)
        or logits, shaped (samples, outputs), or (samples, steps, outputs) when `spec.every_step`."""

    def save(self, directory: Path) -> None:
        """Weights and spec into `directory`, in a format that loads without unpickling code."""

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> "Backend": ...

    def get_weights(self) -> dict[str, np.ndarray]:
        """All parameters in the canonical layout (see CANONICAL_LAYOUT), as float32 arrays."""

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


def predict_in_batches(forward: Callable[[np.ndarray], np.ndarray], x: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """float32 outputs of `forward` over `x` in slices of PREDICT_BATCH, so memory stays bounded."""
    parts = [np.asarray(forward(x[start:start + PREDICT_BATCH])) for start in range(0, len(x), PREDICT_BATCH)]
    return np.concatenate(parts).astype(np.float32) if parts else spec.no_outputs(x.shape[1])


def as_float32(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


def shuffled_batches(count: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's sample indices: a fresh permutation cut into batches (the last may be smaller)."""
    order = rng.permutation(count)
    return [order[start:start + batch_size] for start in range(0, count, batch_size)]


@dataclass(frozen=True)
class Checkpointing:
    """Where a fit saves its state, how often (epochs), and the checkpoint it continues from."""

    path: Path | None = None
    every: int = 0
    resume_from: Checkpoint | None = None

    def due(self, epoch: int, last: bool) -> bool:
        """Every `every` epochs and after the last one, so the trained weights are never only in memory."""
        return self.path is not None and self.every > 0 and (last or epoch % self.every == 0)


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

    def end_epoch(self, train_loss: float, val_loss: float, seconds: float,
                  snapshot: Callable[[], Any]) -> bool:
        epoch = len(self.history) + 1
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            self.close()
            raise TrainingDiverged(
                f"loss became {train_loss if not math.isfinite(train_loss) else val_loss} at epoch {epoch}: "
                f"lower trainer.lr or set trainer.grad_clip")
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
        return Checkpoint(framework, self.epoch, list(self.history), self.best_epoch, self._best_val,
                          dict(self.best_state or {}), state, finished)

    def result(self) -> FitResult:
        self.close()
        return FitResult(list(self.history), self.best_epoch, self.stopped_early)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def run_epochs(framework: str, trainer: TrainerConfig, on_epoch: EpochCallback, steps: TrainingSteps,
               get_weights: Callable[[], dict[str, np.ndarray]],
               set_weights: Callable[[dict[str, np.ndarray]], None],
               checkpointing: Checkpointing | None = None) -> FitResult:
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
                monitor.checkpoint(framework, steps.state(), finished).save(checkpointing.path)  # type: ignore[arg-type]
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
