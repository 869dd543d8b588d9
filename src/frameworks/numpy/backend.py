"""NumPy backend: the cells of this package, trained with hand-written backpropagation through time.

It shares the epoch loop, batching and early stopping with the other backends (base.py) and draws its
batches from the same seeded generator as the torch backend, so both see the same batches in the same
order. It imports neither torch nor TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.config import Optimizer, TrainerConfig
from src.data.base import Split
from src.errors import UserError, reading
from src.frameworks.base import as_float32, load_arrays, predict_in_batches
from src.frameworks.checkpoint import rng_state, set_rng_state
from src.frameworks.initialization import initial_weights
from src.frameworks.numpy import network
from src.frameworks.numpy.optimizers import SGD, Adam, clip_grad_norm, flatten, unflatten
from src.frameworks.spec import ModelSpec, canonical_shapes
from src.frameworks.training import Checkpointing, EpochCallback, FitResult, TrainingSteps, run_epochs, shuffled_batches

WEIGHTS_FILE = "weights.npz"
DROPOUT_STREAM = 1  # dropout masks come from their own stream of trainer.seed, apart from the batch order


class NumpyBackend:
    name = "numpy"
    device = "cpu"

    def __init__(self, spec: ModelSpec, params: dict[str, np.ndarray]) -> None:
        network.check(params, spec)
        self.spec = spec
        self.params = params

    @staticmethod
    def check_device(device: str) -> None:
        _check_device(device)

    @classmethod
    def build(cls, spec: ModelSpec, seed: int, device: str = "auto", init: str = "keras") -> NumpyBackend:
        _check_device(device)
        return cls(spec, initial_weights(spec, np.random.default_rng(seed), init))

    def fit(
        self,
        train: Split,
        val: Split,
        trainer: TrainerConfig,
        on_epoch: EpochCallback,
        checkpointing: Checkpointing | None = None,
    ) -> FitResult:
        x, y = as_float32(train.x), as_float32(train.y)
        optimizer = _optimizer(trainer)
        rng = np.random.default_rng(trainer.seed)
        dropout_rng = np.random.default_rng([trainer.seed, DROPOUT_STREAM])
        shapes = canonical_shapes(self.spec)

        def train_epoch() -> float:
            total = 0.0
            for batch in shuffled_batches(len(x), trainer.batch_size, rng):
                loss, grads, _ = network.loss_and_gradients(self.params, self.spec, x[batch], y[batch], dropout_rng)
                g = flatten(grads, shapes)
                if trainer.grad_clip > 0:
                    g, _ = clip_grad_norm(g, trainer.grad_clip)
                self.params = unflatten(optimizer.step(flatten(self.params, shapes), g), shapes)
                total += loss * len(batch)
            return total / len(x)

        def val_loss() -> float:
            return network.LOSSES[self.spec.loss](self.predict(val.x), as_float32(val.y))[0]

        def state() -> dict[str, np.ndarray]:
            return {
                **{f"weights/{name}": value for name, value in self.params.items()},
                **{f"optimizer/{name}": value for name, value in optimizer.state().items()},
                "rng/batches": rng_state(rng),
                "rng/dropout": rng_state(dropout_rng),
            }

        def load_state(saved: dict[str, np.ndarray]) -> None:
            self.set_weights(
                {name.removeprefix("weights/"): value for name, value in saved.items() if name.startswith("weights/")}
            )
            optimizer.load_state(
                {
                    name.removeprefix("optimizer/"): value
                    for name, value in saved.items()
                    if name.startswith("optimizer/")
                }
            )
            set_rng_state(rng, saved["rng/batches"])
            set_rng_state(dropout_rng, saved["rng/dropout"])

        # A diverging network overflows: that is reported once, as TrainingDiverged (one line), not as
        # NumPy's warnings from inside the arithmetic.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return run_epochs(
                self.name,
                trainer,
                on_epoch,
                TrainingSteps(train_epoch, val_loss, state, load_state),
                self.get_weights,
                self.set_weights,
                checkpointing,
            )

    def predict(self, x: np.ndarray) -> np.ndarray:
        return predict_in_batches(
            lambda part: network.forward(self.params, self.spec, part)[0], x, self.spec, network.INFERENCE_BATCH
        )

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.spec.save(directory)
        np.savez(directory / WEIGHTS_FILE, **self.params)  # type: ignore[arg-type]  # numpy's stubs

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> NumpyBackend:
        _check_device(device)
        spec = ModelSpec.load(directory)
        path = directory / WEIGHTS_FILE
        with reading(path):
            params = {name: as_float32(value) for name, value in load_arrays(path).items()}
            network.check(params, spec)
        return cls(spec, params)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {name: value.astype(np.float32) for name, value in self.params.items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        params = {name: as_float32(value).copy() for name, value in weights.items()}
        network.check(params, self.spec)
        self.params = params

    @staticmethod
    def requirements() -> list[str]:
        return []


def _check_device(device: str) -> None:
    if device not in ("auto", "cpu"):
        raise UserError(f"framework.device={device!r} but the numpy backend runs on the CPU only; use cpu or auto")


def _optimizer(trainer: TrainerConfig) -> SGD | Adam:
    if trainer.optimizer is Optimizer.adam:
        return Adam(trainer.lr)
    return SGD(trainer.lr)
