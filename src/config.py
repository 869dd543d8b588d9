"""Structured configs: the schema that Hydra checks types against while composing conf/.

Types (an integer, one of the allowed names) are checked by Hydra at composition; ranges are checked
in `__post_init__`, which runs when `src.settings.settings_from` turns the composed config into these
dataclasses, before any data is generated or any MLflow run is created. Dataset schemas live next to
their generators in src/data/; src/settings.py registers them all with Hydra, in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from omegaconf import MISSING

from src.data.base import DatasetParams
from src.errors import require, require_fraction
from src.frameworks import FRAMEWORKS

# Upper bounds where a value beyond them only crashes the interpreter or exhausts memory: OpenMP with
# 100,000 threads segfaults, an LSTM of hidden size 100,000 needs 320 GB for one layer's weights.
MAX_THREADS = 256
MAX_HIDDEN_SIZE = 16384
MAX_LAYERS = 64
# Any other integer key: a count of epochs, samples or steps beyond this is a typo, not an experiment.
MAX_INTEGER = 2**32


class Cell(Enum):
    rnn = "rnn"
    lstm = "lstm"
    gru = "gru"


class Activation(Enum):
    tanh = "tanh"
    relu = "relu"


class Init(Enum):
    """Initial weights (src/frameworks/initialization.py): Keras' scheme or torch's, in every framework."""

    keras = "keras"
    torch = "torch"


class Optimizer(Enum):
    adam = "adam"
    sgd = "sgd"


# The names come from the framework registry (src/frameworks/__init__.py), the one list of them.
Framework = Enum("Framework", {name: name for name in FRAMEWORKS})  # type: ignore[misc]


@dataclass
class FrameworkConfig:
    name: Framework = Framework["torch"]
    # "auto" picks a GPU when the framework sees one (numpy always runs on the CPU).
    device: str = "auto"
    # CPU threads of the BLAS and OpenMP pools (NumPy, torch) while training and predicting; 0 keeps
    # the library default. Small recurrent nets gain little from more threads (two were no faster on
    # an idle 2-core machine, and up to 2.8x slower when other jobs shared the cores; benchmarks/), and
    # parallel sweep jobs then don't fight over cores. TensorFlow keeps its own pool.
    threads: int = 1

    def __post_init__(self) -> None:
        require(
            0 <= self.threads <= MAX_THREADS,
            "framework.threads",
            f"must be an integer in [0, {MAX_THREADS}] (0 = library default)",
            self.threads,
        )
        require(
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
            "framework.device",
            "must be auto, cpu, cuda or cuda:N",
            self.device,
        )


@dataclass
class ModelConfig:
    cell: Cell = Cell.lstm
    hidden_size: int = 32
    num_layers: int = 1
    # Only the plain `rnn` cell takes an activation; LSTM and GRU use their gates' own.
    activation: Activation = Activation.tanh
    # Between stacked layers (no effect with one layer), as in torch's nn.RNN.
    dropout: float = 0.0
    # Initial weights, the same in every framework: keras (Glorot inputs, orthogonal recurrent weights,
    # LSTM forget-gate bias 1) or torch (everything U(±1/sqrt(hidden_size))).
    init: Init = Init.keras

    def __post_init__(self) -> None:
        require(
            1 <= self.hidden_size <= MAX_HIDDEN_SIZE,
            "model.hidden_size",
            f"must be an integer in [1, {MAX_HIDDEN_SIZE}]",
            self.hidden_size,
        )
        require(
            1 <= self.num_layers <= MAX_LAYERS,
            "model.num_layers",
            f"must be an integer in [1, {MAX_LAYERS}]",
            self.num_layers,
        )
        require_fraction(self.dropout, "model.dropout")
        require(
            self.cell is Cell.rnn or self.activation is Activation.tanh,
            "model.activation",
            "only the rnn cell takes an activation (lstm and gru use their gates' own); to change the cell,"
            " pick its group (model=lstm, model=gru), which sets its activation too",
            self.activation.value,
        )


@dataclass
class TrainerConfig:
    epochs: int = 100
    batch_size: int = 8
    optimizer: Optimizer = Optimizer.adam
    lr: float = 0.01
    # Clip the global gradient norm to this value; 0 turns clipping off.
    grad_clip: float = 1.0
    # Stop after this many epochs without a better validation loss; 0 turns early stopping off.
    patience: int = 15
    seed: int = 0
    # Save a checkpoint (weights, optimiser, RNG states, early-stopping state) every this many epochs
    # and at the end of training, so a killed run can resume in place (tracking.resume); 0 = off.
    checkpoint_every: int = 1
    # A single run trains in a forked child process while the parent does its MLflow work, so the two
    # overlap on two cores (src/training_process.py); false trains in the run's own process. A sweep's
    # jobs always train in their worker. Linux only (elsewhere it is ignored).
    subprocess: bool = True

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "trainer.epochs", "must be an integer >= 1", self.epochs)
        require(self.batch_size >= 1, "trainer.batch_size", "must be an integer >= 1", self.batch_size)
        require(math.isfinite(self.lr) and self.lr > 0, "trainer.lr", "must be a number > 0", self.lr)
        require(
            math.isfinite(self.grad_clip) and self.grad_clip >= 0,
            "trainer.grad_clip",
            "must be >= 0 (0 turns clipping off)",
            self.grad_clip,
        )
        require(self.patience >= 0, "trainer.patience", "must be >= 0 (0 turns early stopping off)", self.patience)
        require(0 <= self.seed < 2**32, "trainer.seed", "must be an integer in [0, 2**32)", self.seed)
        require(
            self.checkpoint_every >= 0,
            "trainer.checkpoint_every",
            "must be an integer >= 0 (0 = off)",
            self.checkpoint_every,
        )


MAX_EXPERIMENT_NAME = 500  # MLflow refuses longer experiment names when it creates one; run names too


@dataclass
class TrackingConfig:
    # null: $MLFLOW_TRACKING_URI if set, else the SQLite file mlflow.db at the project root.
    uri: Optional[str] = None
    experiment: str = "rnnlab"
    run_name: Optional[str] = None
    log_model: bool = True
    # Continue an unfinished run of the same run_key (KILLED, FAILED, or RUNNING whose process is gone)
    # from its last checkpoint, in place, instead of starting a new run.
    resume: bool = False
    # A job whose run_key already has a FINISHED run trains nothing and returns that run's objective.
    skip_finished: bool = False
    # A name: a single run registers its model as a new version of this registered model; a sweep
    # registers only its best job's model and points the alias `champion` at it. null = off.
    registered_model: Optional[str] = None

    def __post_init__(self) -> None:
        require(bool(self.experiment.strip()), "tracking.experiment", "must be a non-empty name", self.experiment)
        require(
            len(self.experiment) <= MAX_EXPERIMENT_NAME,
            "tracking.experiment",
            f"must be at most {MAX_EXPERIMENT_NAME} characters (MLflow's limit), not {len(self.experiment)}",
            self.experiment[:40] + "...",
        )
        if self.run_name is not None:  # every config value is also a param, which MLflow cuts at 6000
            require(
                len(self.run_name) <= MAX_EXPERIMENT_NAME,
                "tracking.run_name",
                f"must be at most {MAX_EXPERIMENT_NAME} characters, not {len(self.run_name)}",
                self.run_name[:40] + "...",
            )
        if self.registered_model is not None:
            require(
                bool(self.registered_model.strip()) and not set("/:") & set(self.registered_model),
                "tracking.registered_model",
                "must be a non-empty name without '/' or ':' (or null: register nothing)",
                self.registered_model,
            )
            require(
                self.log_model,
                "tracking.registered_model",
                "needs tracking.log_model=true (there is no model to register without it)",
                self.registered_model,
            )


@dataclass
class Config:
    # Each dataset brings its own schema (src/data/<name>.py), a subclass of DatasetParams.
    dataset: DatasetParams = MISSING
    framework: FrameworkConfig = field(default_factory=FrameworkConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # The metric the entry point returns for a Hydra sweeper; src/tasks/ says which exist and their direction.
    objective: str = "val_loss"
