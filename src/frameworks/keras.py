"""Keras 3 backend (TensorFlow): SimpleRNN / LSTM / GRU layers with a Dense head on the last step
(on every step for a language model, whose token ids a weightless OneHot layer encodes first).

Training runs through the shared epoch loop (base.py) with `train_on_batch` over the same seeded
batches as the other backends: the divergence check, early stopping, the best weights and
checkpoints behave as there, and a resumed fit continues with the exact weights, optimiser
variables and dropout seed states it stopped with. (On small recurrent nets this is also faster
than `model.fit`, whose per-epoch machinery costs more than the batches.) Weights travel in the
canonical layout through `convert`, and are saved as an .npz of that layout: no pickle, and a
torch or numpy user can read them.

TensorFlow is imported here and only here, so selecting another framework never loads it.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# Both must be set before Keras (and through it TensorFlow) is first imported.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def _native_output_hidden() -> Iterator[None]:
    """TensorFlow's C++ library writes to file descriptor 2 while it loads ("All log messages before
    absl::InitializeLog() ...", "oneDNN custom operations are on ..."), before TF_CPP_MIN_LOG_LEVEL
    applies: two lines before every Keras run's output, and before a one-line error. They go to a
    temporary file instead, written out after all if the import fails (its explanation may be there)."""
    import sys
    import tempfile

    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            os.write(2, captured.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


with _native_output_hidden():
    import keras
    import tensorflow as tf

import numpy as np  # noqa: E402

from src.config import Optimizer, TrainerConfig  # noqa: E402
from src.data.base import Split  # noqa: E402
from src.errors import UserError, reading  # noqa: E402
from src.frameworks import convert  # noqa: E402
from src.frameworks.base import as_float32, load_arrays, predict_in_batches  # noqa: E402
from src.frameworks.checkpoint import rng_state, set_rng_state  # noqa: E402
from src.frameworks.initialization import initial_weights  # noqa: E402
from src.frameworks.numpy.network import LOSSES  # noqa: E402  (plain NumPy: the validation loss)
from src.frameworks.spec import ModelSpec  # noqa: E402
from src.frameworks.training import Checkpointing, EpochCallback, FitResult, TrainingSteps, run_epochs, shuffled_batches  # noqa: E402

WEIGHTS_FILE = "weights.npz"
# Adam's epsilon as torch's default, so one trainer config means the same optimiser everywhere.
ADAM_EPSILON = 1e-8

if keras.backend.backend() != "tensorflow":
    raise UserError(
        f"KERAS_BACKEND={keras.backend.backend()!r}: framework=keras needs the tensorflow "
        f"backend; unset KERAS_BACKEND or set it to tensorflow"
    )


def resolve_device(device: str) -> tuple[str, str]:
    """(what the run reports, the TensorFlow device string) for `framework.device`."""
    gpus = tf.config.list_physical_devices("GPU")
    if device == "auto":
        return ("gpu", "/GPU:0") if gpus else ("cpu", "/CPU:0")
    if device == "cpu":
        return "cpu", "/CPU:0"
    index = int(device.partition(":")[2] or 0)
    if index >= len(gpus):
        raise UserError(f"framework.device={device!r} but TensorFlow sees {len(gpus)} GPU(s); use auto or cpu")
    return ("gpu" if index == 0 else f"gpu:{index}"), f"/GPU:{index}"


class OneHot(keras.layers.Layer):
    """Token ids (samples, steps, 1) → one-hot vectors (samples, steps, vocabulary); no weights."""

    def __init__(self, size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = size

    def call(self, ids: Any) -> Any:
        return keras.ops.one_hot(keras.ops.cast(ids[..., 0], "int32"), self.size, dtype=self.compute_dtype)


def build_network(spec: ModelSpec, seed: int) -> keras.Sequential:
    """Stacked recurrent layers (dropout between them, not after the last) and a Dense head, which
    Keras applies at every step when the last recurrent layer returns sequences.

    Every initializer, cell and dropout layer gets its own seed drawn from `seed`, so building reads
    no global random state and two builds with one seed are identical.
    """
    seeds = iter(np.random.default_rng(seed).integers(0, 2**31 - 1, size=4 * spec.num_layers + 1).tolist())
    layers: list[Any] = [keras.Input(shape=(None, spec.input_width), dtype="float32")]
    if spec.token_inputs:
        layers.append(OneHot(spec.num_features, dtype="float32"))
    for index in range(spec.num_layers):
        last = index == spec.num_layers - 1
        layers.append(_recurrent_layer(spec, return_sequences=spec.every_step or not last, seeds=seeds))
        if spec.dropout > 0 and not last:
            layers.append(keras.layers.Dropout(spec.dropout, seed=next(seeds), dtype="float32"))
    layers.append(
        keras.layers.Dense(
            spec.num_outputs, dtype="float32", kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds))
        )
    )
    return keras.Sequential(layers, name=f"{spec.cell}_{spec.loss}")


def _recurrent_layer(spec: ModelSpec, return_sequences: bool, seeds: Iterator[int]) -> keras.layers.Layer:
    common: dict[str, Any] = {
        "units": spec.hidden_size,
        "return_sequences": return_sequences,
        "kernel_initializer": keras.initializers.GlorotUniform(seed=next(seeds)),
        "recurrent_initializer": keras.initializers.Orthogonal(seed=next(seeds)),
        "seed": next(seeds),  # unseeded, the cell's (unused) dropout would draw from Python's `random`
        "dtype": "float32",
    }
    if spec.cell == "rnn":
        return keras.layers.SimpleRNN(activation=spec.activation, **common)
    if spec.cell == "lstm":
        return keras.layers.LSTM(**common)
    if spec.cell == "gru":
        return keras.layers.GRU(reset_after=True, **common)  # the GRU variant torch implements
    raise ValueError(f"unknown cell {spec.cell!r}")


class KerasBackend:
    name = "keras"

    def __init__(self, spec: ModelSpec, model: keras.Sequential, device: str, tf_device: str) -> None:
        self.spec = spec
        self.model = model
        self.device = device
        self._tf_device = tf_device
        # One graph for any batch and sequence length: several times faster than eager calls. Without
        # AutoGraph: a model call has no Python control flow to convert, and AutoGraph would write the
        # converted lambda to a temporary file that only an atexit hook removes (the training process ends
        # with os._exit, so every Keras run left one in /tmp).
        self._forward = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, None, spec.input_width], tf.float32)],
            autograph=False,
        )

    @staticmethod
    def check_device(device: str) -> None:
        resolve_device(device)

    @classmethod
    def build(cls, spec: ModelSpec, seed: int, device: str = "auto", init: str = "keras") -> KerasBackend:
        # Same config and seed → same numbers. Process-wide, but it only touches TensorFlow, which nothing
        # but this backend uses: kernels run deterministically, unseeded random ops raise (every one of
        # ours is seeded), and Keras' jit_compile="auto" leaves XLA off. Switched on by the first model
        # built, not by importing this module.
        tf.config.experimental.enable_op_determinism()
        shown, tf_device = resolve_device(device)
        with _global_rngs_kept(), tf.device(tf_device):
            model = build_network(spec, seed)
        backend = cls(spec, model, shown, tf_device)
        backend.set_weights(initial_weights(spec, np.random.default_rng(seed), init))  # as numpy's and torch's
        return backend

    def fit(
        self,
        train: Split,
        val: Split,
        trainer: TrainerConfig,
        on_epoch: EpochCallback,
        checkpointing: Checkpointing | None = None,
    ) -> FitResult:
        x, y = as_float32(train.x), as_float32(train.y)
        val_y = as_float32(val.y)
        rng = np.random.default_rng(trainer.seed)

        def train_epoch() -> float:
            total = 0.0
            for batch in shuffled_batches(len(x), trainer.batch_size, rng):
                total += float(self.model.train_on_batch(x[batch], y[batch])) * len(batch)
            return total / len(x)

        def val_loss() -> float:
            return LOSSES[self.spec.loss](self.predict(val.x), val_y)[0]

        def state() -> dict[str, np.ndarray]:
            # Model variables include the dropout layers' seed states; the optimiser's its step count.
            saved = {f"model/{index}": np.asarray(v) for index, v in enumerate(self.model.variables)}
            saved.update(
                {f"optimizer/{index}": np.asarray(v) for index, v in enumerate(self.model.optimizer.variables)}
            )
            saved["rng/batches"] = rng_state(rng)
            return saved

        def load_state(saved: dict[str, np.ndarray]) -> None:
            self.model.optimizer.build(self.model.trainable_variables)
            for prefix, variables in (("model", self.model.variables), ("optimizer", self.model.optimizer.variables)):
                for index, variable in enumerate(variables):
                    variable.assign(saved[f"{prefix}/{index}"])
            set_rng_state(rng, saved["rng/batches"])

        with _seeded(trainer.seed), tf.device(self._tf_device):
            self.model.compile(optimizer=_optimizer(trainer), loss=_loss(self.spec))
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
        with tf.device(self._tf_device):
            return predict_in_batches(lambda part: self._forward(tf.constant(part)).numpy(), as_float32(x), self.spec)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.spec.save(directory)
        np.savez(directory / WEIGHTS_FILE, **self.get_weights())  # type: ignore[arg-type]  # numpy's stubs

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> KerasBackend:
        spec = ModelSpec.load(directory)
        path = directory / WEIGHTS_FILE
        backend = cls.build(spec, seed=0, device=device)
        with reading(path):
            backend.set_weights(load_arrays(path))
        return backend

    def get_weights(self) -> dict[str, np.ndarray]:
        return convert.keras_to_canonical(self.model.get_weights(), self.spec)

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.model.set_weights(convert.canonical_to_keras(weights, self.spec))

    @staticmethod
    def requirements() -> list[str]:
        return [_pin(("tensorflow-cpu", "tensorflow"), tf.__version__), _pin(("keras",), keras.__version__)]


@contextlib.contextmanager
def _global_rngs_kept() -> Iterator[None]:
    """Python's `random` and NumPy's global generator as they were before, whatever Keras draws."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed Keras and TensorFlow (fit's shuffling draws from TF's global seed); the Python and
    NumPy generators that keras.utils.set_random_seed also reseeds are put back afterwards."""
    with _global_rngs_kept():
        keras.utils.set_random_seed(seed)
        yield


def _loss(spec: ModelSpec) -> str | keras.losses.Loss:
    """MSE, or the mean cross-entropy of logits against class ids (Keras' sparse categorical)."""
    return "mse" if spec.loss == "mse" else keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _optimizer(trainer: TrainerConfig) -> keras.optimizers.Optimizer:
    clip = {"global_clipnorm": trainer.grad_clip} if trainer.grad_clip > 0 else {}
    if trainer.optimizer is Optimizer.adam:
        return keras.optimizers.Adam(learning_rate=trainer.lr, epsilon=ADAM_EPSILON, **clip)
    return keras.optimizers.SGD(learning_rate=trainer.lr, **clip)


def _pin(distributions: tuple[str, ...], module_version: str) -> str:
    """`name==version` for the first installed distribution; the module's own version otherwise."""
    for name in distributions:
        try:
            return f"{name}=={version(name)}"
        except PackageNotFoundError:
            continue
    return f"{distributions[-1]}=={module_version}"


BACKEND = KerasBackend
