"""The Keras backend: same numbers as torch for the same weights, deterministic training, early
stopping that restores the best epoch, and save/load that fails with the file's name."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from src import tasks
from src.config import Optimizer, TrainerConfig
from src.data import next_number
from src.data import sum as sum_data
from src.data.base import Split, Splits
from src.errors import TrainingDiverged, UserError
from src.frameworks import backend_class
from src.frameworks.checkpoint import EpochResult
from src.frameworks.keras import WEIGHTS_FILE, KerasBackend
from src.frameworks.spec import ModelSpec
from src.frameworks.torch import TorchBackend
from src.frameworks.training import FitResult

QUICK = TrainerConfig(epochs=3, batch_size=16, optimizer=Optimizer.adam, lr=0.01, grad_clip=1.0, patience=0, seed=0)
# Two stacked layers with dropout between them: the seeded dropout must repeat too.
STACKED = ModelSpec(
    cell="lstm", hidden_size=8, num_layers=2, activation="tanh", dropout=0.2, num_features=1, num_outputs=1
)


@pytest.fixture(scope="module")
def sums() -> Splits:
    return sum_data.generate(sum_data.Params(num_samples=200), seed=0)


def fitted(
    splits: Splits, spec: ModelSpec, trainer: TrainerConfig
) -> tuple[KerasBackend, FitResult, list[EpochResult]]:
    backend = KerasBackend.build(spec, seed=trainer.seed, device="cpu")
    epochs: list[EpochResult] = []
    return backend, backend.fit(splits.train, splits.val, trainer, epochs.append), epochs


@pytest.fixture(scope="module")
def two_fits(sums: Splits) -> list[tuple[KerasBackend, FitResult, list[EpochResult]]]:
    return [fitted(sums, STACKED, QUICK) for _ in range(2)]


def test_framework_lookup_finds_the_keras_backend() -> None:
    assert backend_class("keras") is KerasBackend


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell, activation", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")])
def test_same_weights_predict_the_same_as_torch(cell: str, activation: str, num_layers: int) -> None:
    spec = ModelSpec(
        cell=cell,
        hidden_size=4,
        num_layers=num_layers,
        activation=activation,
        dropout=0.0,
        num_features=3,
        num_outputs=1,
    )
    torch_backend = TorchBackend.build(spec, seed=0, device="cpu")
    # torch initialises its biases too, so both biases and every gate block take part.
    keras_backend = KerasBackend.build(spec, seed=0, device="cpu")
    keras_backend.set_weights(torch_backend.get_weights())
    x = np.random.default_rng(1).normal(size=(16, 7, 3)).astype(np.float32)
    keras_predictions = keras_backend.predict(x)
    assert keras_predictions.dtype == np.float32 and keras_predictions.shape == (16, 1)
    np.testing.assert_allclose(keras_predictions, torch_backend.predict(x), rtol=0, atol=1e-5)


def test_fit_reports_each_epoch_with_falling_losses(two_fits) -> None:
    _, result, epochs = two_fits[0]
    assert [e.epoch for e in epochs] == [1, 2, 3] and result.history == epochs
    assert all(math.isfinite(e.train_loss) and math.isfinite(e.val_loss) and e.seconds > 0 for e in epochs)
    assert epochs[-1].train_loss < epochs[0].train_loss and epochs[-1].val_loss < epochs[0].val_loss


def test_two_fits_with_one_seed_agree(two_fits, sums: Splits) -> None:
    (first, first_result, _), (second, second_result, _) = two_fits
    np.testing.assert_allclose(first.predict(sums.test.x), second.predict(sums.test.x), rtol=0, atol=1e-6)
    assert [e.val_loss for e in first_result.history] == pytest.approx(
        [e.val_loss for e in second_result.history], abs=1e-6
    )


def test_build_and_fit_leave_python_and_numpy_random_state_alone(sums: Splits) -> None:
    python_state, numpy_state = random.getstate(), np.random.get_state()[1].copy()
    fitted(sums, STACKED, TrainerConfig(epochs=1, batch_size=64, seed=3))
    assert random.getstate() == python_state
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)


def test_early_stopping_restores_the_best_epoch(sums: Splits) -> None:
    # SGD at a high rate overshoots after epoch 3, so patience 2 stops at epoch 5.
    spec = ModelSpec(
        cell="gru", hidden_size=8, num_layers=1, activation="tanh", dropout=0.0, num_features=1, num_outputs=1
    )
    trainer = TrainerConfig(epochs=20, batch_size=16, optimizer=Optimizer.sgd, lr=0.3, grad_clip=1.0, patience=2)
    backend, result, _ = fitted(sums, spec, trainer)
    assert result.stopped_early and result.best_epoch == len(result.history) - 2
    assert result.history[-1].val_loss > result.best.val_loss
    val_loss = float(np.mean((backend.predict(sums.val.x) - sums.val.y) ** 2))
    assert val_loss == pytest.approx(result.best.val_loss, rel=1e-5)


def test_a_diverging_fit_raises_training_diverged(sums: Splits) -> None:
    spec = ModelSpec("rnn", 4, 1, "relu", 0.0, 1, 1)
    trainer = TrainerConfig(epochs=3, batch_size=64, optimizer=Optimizer.sgd, lr=1e30, grad_clip=0.0)
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        fitted(sums, spec, trainer)


def test_save_and_load_give_identical_predictions(two_fits, sums: Splits, tmp_path: Path) -> None:
    backend = two_fits[0][0]
    backend.save(tmp_path / "model")
    loaded = KerasBackend.load(tmp_path / "model", device="cpu")
    assert loaded.spec == STACKED
    np.testing.assert_array_equal(loaded.predict(sums.test.x), backend.predict(sums.test.x))


def test_loading_a_missing_or_corrupt_weights_file_names_it(tmp_path: Path) -> None:
    spec = ModelSpec("gru", 4, 1, "tanh", 0.0, 3, 1)
    KerasBackend.build(spec, seed=0, device="cpu").save(tmp_path)
    path = tmp_path / WEIGHTS_FILE
    path.write_bytes(b"not a zip archive")
    with pytest.raises(UserError, match=f"model file corrupt: {path}"):
        KerasBackend.load(tmp_path)
    np.savez(path, **{"head.bias": np.zeros(1, np.float32)})  # readable, but not this network's weights
    with pytest.raises(UserError, match=f"model file corrupt: {path}"):
        KerasBackend.load(tmp_path)
    path.unlink()
    with pytest.raises(UserError, match=f"model file missing: {path}"):
        KerasBackend.load(tmp_path)


def test_requirements_pin_tensorflow_and_keras() -> None:
    requirements = KerasBackend.requirements()
    assert [r.split("==")[0] for r in requirements] in (["tensorflow-cpu", "keras"], ["tensorflow", "keras"])
    assert all(r.split("==")[1] for r in requirements)


def test_notebook_example_trains_on_raw_next_number() -> None:
    """SimpleRNN(32, relu) + Dense(1), adam 0.001, MSE, 10 epochs, batch 8, unscaled integers."""
    splits = next_number.generate(next_number.Params(standardize=False), seed=0)
    spec = ModelSpec(
        cell="rnn", hidden_size=32, num_layers=1, activation="relu", dropout=0.0, num_features=1, num_outputs=1
    )
    trainer = TrainerConfig(epochs=10, batch_size=8, optimizer=Optimizer.adam, lr=0.001, grad_clip=0.0, patience=0)
    backend, result, _ = fitted(splits, spec, trainer)
    mae = float(np.mean(np.abs(backend.predict(splits.test.x) - splits.test.y)))
    mean_baseline_mae = float(np.mean(np.abs(splits.train.y.mean() - splits.test.y)))  # 74 on 125..134
    assert len(result.history) == 10 and result.history[-1].train_loss < result.history[0].train_loss / 100
    assert mae < mean_baseline_mae / 10  # it learned the rule (MAE 2.7), outside the training range too


@pytest.mark.parametrize("task", ["classification", "language_model"])
@pytest.mark.parametrize("cell, activation", [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")])
def test_same_weights_give_the_same_logits_as_torch_for_the_new_heads(cell: str, activation: str, task: str) -> None:
    """The cross-entropy heads: the last step's logits, or every step's after one-hot token inputs."""
    features, outputs = (3, 4) if task == "classification" else (5, 5)
    spec = ModelSpec(
        cell=cell,
        hidden_size=4,
        num_layers=2,
        activation=activation,
        dropout=0.0,
        num_features=features,
        num_outputs=outputs,
        head=tasks.get(task).head,
    )
    torch_backend = TorchBackend.build(spec, seed=0, device="cpu")
    keras_backend = KerasBackend.build(spec, seed=0, device="cpu")
    keras_backend.set_weights(torch_backend.get_weights())
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(16, 7, 3)) if task == "classification" else rng.integers(0, 5, size=(16, 7, 1))).astype(
        np.float32
    )
    logits = keras_backend.predict(x)
    assert logits.shape == ((16, 4) if task == "classification" else (16, 7, 5))
    np.testing.assert_allclose(logits, torch_backend.predict(x), rtol=0, atol=1e-5)


def test_keras_trains_a_language_model_with_the_sparse_cross_entropy() -> None:
    spec = ModelSpec("gru", 8, 1, "tanh", 0.0, num_features=4, num_outputs=4, head=tasks.get("language_model").head)
    ids = np.tile([0, 1, 2, 3], 160).reshape(40, 16).astype(np.float32)  # 0 1 2 3 0 1 ...: next = id + 1 mod 4
    split = Split(ids[..., None], (ids + 1) % 4)
    trainer = TrainerConfig(epochs=15, batch_size=8, optimizer=Optimizer.adam, lr=0.05, grad_clip=1.0, patience=0)
    backend = KerasBackend.build(spec, seed=0, device="cpu")
    result = backend.fit(split, split, trainer, lambda epoch: None)
    assert result.history[0].train_loss == pytest.approx(np.log(4), rel=0.2)  # starts near chance: ln 4 nats
    assert result.best.val_loss < 0.1
