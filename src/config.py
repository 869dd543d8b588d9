"""Structured configs: the schema that Hydra checks types against while composing conf/.

Types (an integer, one of the allowed names) are checked by Hydra at composition; ranges are checked
in `__post_init__`, which runs when `settings_from` turns the composed config into these
dataclasses, before any data is generated or any MLflow run is created. Dataset schemas live
next to their generators in src/data/ and are registered from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from src.errors import UserError


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


class Optimizer(Enum):
    adam = "adam"
    sgd = "sgd"


class Framework(Enum):
    torch = "torch"
    numpy = "numpy"
    keras = "keras"


def require(condition: bool, key: str, allowed: str, value: Any) -> None:
    """Raise the one-line error that names the key, the bad value and what is allowed."""
    if not condition:
        raise UserError(f"{key}={value!r} is invalid: {allowed}")


def require_fraction(value: float, key: str) -> None:
    require(0.0 <= value < 1.0, key, "must be in [0, 1)", value)


@dataclass
class FrameworkConfig:
    name: Framework = Framework.torch
    # "auto" picks a GPU when the framework sees one (numpy always runs on the CPU).
    device: str = "auto"
    # CPU threads of the BLAS and OpenMP pools (NumPy, torch) while training and predicting; 0 keeps
    # the library default. Small recurrent nets gain little from more threads (two were no faster on
    # an idle 2-core machine, and up to 2.8x slower when other jobs shared the cores; benchmarks/), and
    # parallel sweep jobs then don't fight over cores. TensorFlow keeps its own pool.
    threads: int = 1

    def __post_init__(self) -> None:
        require(0 <= self.threads <= MAX_THREADS, "framework.threads",
                f"must be an integer in [0, {MAX_THREADS}] (0 = library default)", self.threads)
        require(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
                "framework.device", "must be auto, cpu, cuda or cuda:N", self.device)


@dataclass
class ModelConfig:
    cell: Cell = Cell.lstm
    hidden_size: int = 32
    num_layers: int = 1
    # Only the plain `rnn` cell takes an activation; LSTM and GRU use their gates' own.
    activation: Activation = Activation.tanh
    # Between stacked layers (no effect with one layer), as in torch's nn.RNN.
    dropout: float = 0.0

    def __post_init__(self) -> None:
        require(1 <= self.hidden_size <= MAX_HIDDEN_SIZE, "model.hidden_size",
                f"must be an integer in [1, {MAX_HIDDEN_SIZE}]", self.hidden_size)
        require(1 <= self.num_layers <= MAX_LAYERS, "model.num_layers", f"must be an integer in [1, {MAX_LAYERS}]",
                self.num_layers)
        require_fraction(self.dropout, "model.dropout")
        require(self.cell is Cell.rnn or self.activation is Activation.tanh, "model.activation",
                "only the rnn cell takes an activation (lstm and gru use their gates' own)", self.activation.value)


@dataclass
class TrainerConfig:
    epochs: int = 100
    batch_size: int = 32
    optimizer: Optimizer = Optimizer.adam
    lr: float = 0.005
    # Clip the global gradient norm to this value; 0 turns clipping off.
    grad_clip: float = 1.0
    # Stop after this many epochs without a better validation loss; 0 turns early stopping off.
    patience: int = 15
    seed: int = 0
    # Save a checkpoint (weights, optimiser, RNG states, early-stopping state) every this many epochs
    # and at the end of training, so a killed run can resume in place (tracking.resume); 0 = off.
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "trainer.epochs", "must be an integer >= 1", self.epochs)
        require(self.batch_size >= 1, "trainer.batch_size", "must be an integer >= 1", self.batch_size)
        require(math.isfinite(self.lr) and self.lr > 0, "trainer.lr", "must be a number > 0", self.lr)
        require(math.isfinite(self.grad_clip) and self.grad_clip >= 0, "trainer.grad_clip",
                "must be >= 0 (0 turns clipping off)", self.grad_clip)
        require(self.patience >= 0, "trainer.patience", "must be >= 0 (0 turns early stopping off)",
                self.patience)
        require(0 <= self.seed < 2**32, "trainer.seed", "must be an integer in [0, 2**32)", self.seed)
        require(self.checkpoint_every >= 0, "trainer.checkpoint_every", "must be an integer >= 0 (0 = off)",
                self.checkpoint_every)


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

    def __post_init__(self) -> None:
        require(bool(self.experiment.strip()), "tracking.experiment", "must be a non-empty name",
                self.experiment)


# Per-epoch curves are logged as train_loss/val_loss; their values at the best epoch (the weights
# kept) are the final metrics best_train_loss/best_val_loss, which those objectives name.
FINAL_LOSS_METRICS = {"train_loss": "best_train_loss", "val_loss": "best_val_loss"}
# Every objective with its direction: errors and losses shrink, accuracy, F1 and R² grow. A sweep
# follows it (the Optuna preset's `direction`, the best run, +inf or -inf for a failed job).
OBJECTIVE_DIRECTIONS = {
    **{name: "minimize" for name in ("val_loss", "train_loss", "test_mse", "test_rmse", "test_mae", "test_log_loss",
                                     "test_loss", "test_perplexity", "test_bpc")},
    **{name: "maximize" for name in ("test_r2", "test_accuracy", "test_f1_macro")},
}
OBJECTIVES = tuple(OBJECTIVE_DIRECTIONS)


def objective_direction(objective: str) -> str:
    """"minimize" or "maximize"; a metric not named above is minimised."""
    return OBJECTIVE_DIRECTIONS.get(objective, "minimize")


def worst_value(objective: str) -> float:
    """What a failed sweep job returns: the value no sweeper following the direction would pick."""
    return math.inf if objective_direction(objective) == "minimize" else -math.inf


@dataclass
class Config:
    # Each dataset brings its own schema (src/data/<name>.py), checked the same way.
    dataset: Any = MISSING
    framework: FrameworkConfig = field(default_factory=FrameworkConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # The metric the entry point returns for a Hydra sweeper (its direction: OBJECTIVE_DIRECTIONS).
    objective: str = "val_loss"

    def __post_init__(self) -> None:
        require(self.objective in OBJECTIVES, "objective", f"must be one of {', '.join(OBJECTIVES)}",
                self.objective)


def register_configs() -> None:
    """Put the schemas where conf/ finds them: `config_schema` and `/schema/dataset/<name>`."""
    from src.data import DATASETS

    from src.resume import register_resolvers

    register_resolvers()
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    for name, module in DATASETS.items():
        store.store(group="schema/dataset", name=name, node=module.Params)


def settings_from_params(values: dict[str, Any]) -> Config:
    """Checked settings from a plain mapping (DVC's params.yaml), against the same schemas as Hydra's."""
    from src.data import DATASETS

    name = values.get("dataset", {}).get("name")
    require(name in DATASETS, "dataset.name", f"must be one of {', '.join(DATASETS)}", name)
    schema = OmegaConf.structured(Config)
    schema.dataset = OmegaConf.structured(DATASETS[name].Params)
    try:
        merged = OmegaConf.merge(schema, values)
    except Exception as error:
        raise UserError(f"invalid params: {str(error).splitlines()[0]}") from None
    return settings_from(merged)  # type: ignore[arg-type]


def settings_from(cfg: DictConfig) -> Config:
    """The composed config as checked dataclasses; range errors and unknown keys surface here as UserError."""
    try:
        settings = OmegaConf.to_object(cfg)
    except UserError:
        raise
    except Exception as error:  # OmegaConf wraps errors raised inside __post_init__
        cause = error.__cause__ or error.__context__
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"invalid config: {str(error).splitlines()[0]}") from None
    check_known_keys(cfg, settings)
    return settings  # type: ignore[return-value]


def check_known_keys(node: Any, schema: Any, prefix: str = "") -> None:
    """Every key of the composed config is a field of its schema (`+trainer.momentum=0.9` would
    otherwise be logged as a param while nothing reads it), every float is finite and every integer
    below MAX_INTEGER."""
    names = {item.name for item in fields(schema)}
    for key in node:
        require(key in names, f"{prefix}{key}", f"is not a config key; {prefix.rstrip('.') or 'the config'} "
                f"has {', '.join(sorted(names))}", node[key] if not OmegaConf.is_config(node[key]) else "...")
        value = getattr(schema, key)
        if is_dataclass(value) and OmegaConf.is_config(node[key]):
            check_known_keys(node[key], value, f"{prefix}{key}.")
        elif isinstance(value, float) and not isinstance(value, bool):
            require(math.isfinite(value), f"{prefix}{key}", "must be a finite number", value)
        elif isinstance(value, int) and not isinstance(value, bool):
            require(abs(value) <= MAX_INTEGER, f"{prefix}{key}", f"must be at most {MAX_INTEGER} in size", value)
