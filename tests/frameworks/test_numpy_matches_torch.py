"""The NumPy backend computes what the torch backend computes: the same predictions from the same
weights, the same weights after the same training steps; and it is deterministic and saves safely."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from src import tasks
from src.config import Optimizer, TrainerConfig
from src.data.base import Split
from src.errors import UserError
from src.frameworks.numpy import NumpyBackend
from src.frameworks.spec import ModelSpec
from src.paths import PROJECT_ROOT

torch_backend = pytest.importorskip("src.frameworks.torch")

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


def spec_for(cell: str, activation: str, num_layers: int, dropout: float = 0.0) -> ModelSpec:
    return ModelSpec(
        cell=cell,
        hidden_size=8,
        num_layers=num_layers,
        activation=activation,
        dropout=dropout,
        num_features=2,
        num_outputs=2,
    )


def split(samples: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.normal(size=(samples, 6, 2)).astype(np.float32), rng.normal(size=(samples, 2)).astype(np.float32))


def twins(spec: ModelSpec) -> tuple:
    """A torch backend and a NumPy backend holding the torch backend's initial weights."""
    torch_model = torch_backend.TorchBackend.build(spec, seed=3, device="cpu")
    numpy_model = NumpyBackend.build(spec, seed=3)
    numpy_model.set_weights(torch_model.get_weights())
    return torch_model, numpy_model


def max_difference(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> float:
    assert first.keys() == second.keys()
    return max(float(np.max(np.abs(first[name] - second[name]))) for name in first)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell, activation", CELLS)
def test_same_weights_give_the_same_predictions(cell: str, activation: str, num_layers: int) -> None:
    torch_model, numpy_model = twins(spec_for(cell, activation, num_layers))
    x = split(64, seed=0).x * 2
    predictions = numpy_model.predict(x)
    assert predictions.dtype == np.float32 and predictions.shape == (64, 2)
    assert np.max(np.abs(predictions - torch_model.predict(x))) <= 1e-5


@pytest.mark.parametrize("grad_clip", [0.0, 0.05])
@pytest.mark.parametrize("optimizer", [Optimizer.sgd, Optimizer.adam])
@pytest.mark.parametrize("cell, activation", CELLS)
def test_training_steps_give_the_same_weights(
    cell: str, activation: str, optimizer: Optimizer, grad_clip: float
) -> None:
    """Two epochs of two shuffled batches each: four steps, which also checks the batch order."""
    torch_model, numpy_model = twins(spec_for(cell, activation, num_layers=2))
    train, val = split(32, seed=1), split(16, seed=2)
    trainer = TrainerConfig(
        epochs=2, batch_size=16, optimizer=optimizer, lr=0.1, grad_clip=grad_clip, patience=0, seed=5
    )
    start = numpy_model.get_weights()
    torch_fit = torch_model.fit(train, val, trainer, lambda epoch: None)
    numpy_fit = numpy_model.fit(train, val, trainer, lambda epoch: None)
    # float32 arithmetic in a different order: Adam at lr 0.1 turns a 1e-7 gradient difference into ~1e-5
    # (measured: at most 1.1e-5 over every case, from the Keras-scheme start); SGD passes it on as it is.
    tolerance = 3e-5 if optimizer is Optimizer.adam else 2e-6
    assert max_difference(torch_model.get_weights(), numpy_model.get_weights()) <= tolerance
    assert max_difference(start, numpy_model.get_weights()) > 10 * tolerance  # moved well beyond it
    assert numpy_fit.best_epoch == torch_fit.best_epoch
    for numpy_epoch, torch_epoch in zip(numpy_fit.history, torch_fit.history):
        assert numpy_epoch.train_loss == pytest.approx(torch_epoch.train_loss, rel=1e-5)
        assert numpy_epoch.val_loss == pytest.approx(torch_epoch.val_loss, rel=1e-5)


def test_clipping_scales_the_sgd_step_to_the_max_norm() -> None:
    """One SGD step with lr 1 and clipping at 0.01 moves the weights by a vector of norm 0.01."""
    _, numpy_model = twins(spec_for("lstm", "tanh", num_layers=1))
    data = split(16, seed=4)
    trainer = TrainerConfig(
        epochs=1, batch_size=16, optimizer=Optimizer.sgd, lr=1.0, grad_clip=0.01, patience=0, seed=0
    )
    start = numpy_model.get_weights()
    numpy_model.fit(data, data, trainer, lambda epoch: None)
    after = numpy_model.get_weights()
    step = np.sqrt(sum(np.sum((after[name] - start[name]) ** 2, dtype=np.float64) for name in start))
    assert step == pytest.approx(0.01, rel=1e-4)


def test_fitting_twice_gives_identical_predictions() -> None:
    spec = spec_for("gru", "tanh", num_layers=2, dropout=0.3)
    train, val = split(40, seed=1), split(10, seed=2)
    trainer = TrainerConfig(
        epochs=3, batch_size=8, optimizer=Optimizer.adam, lr=0.01, grad_clip=1.0, patience=0, seed=7
    )
    predictions = []
    for _ in range(2):
        model = NumpyBackend.build(spec, seed=11)
        model.fit(train, val, trainer, lambda epoch: None)
        predictions.append(model.predict(val.x))
    np.testing.assert_array_equal(predictions[0], predictions[1])
    untrained = NumpyBackend.build(spec, seed=11).predict(val.x)
    assert not np.array_equal(untrained, predictions[0])


def test_fit_restores_the_best_epoch_and_reports_every_epoch() -> None:
    spec = spec_for("rnn", "tanh", num_layers=1)
    train, val = split(40, seed=1), split(10, seed=2)
    trainer = TrainerConfig(
        epochs=4, batch_size=8, optimizer=Optimizer.adam, lr=0.05, grad_clip=1.0, patience=0, seed=0
    )
    model = NumpyBackend.build(spec, seed=0)
    seen = []
    result = model.fit(train, val, trainer, seen.append)
    assert [epoch.epoch for epoch in seen] == [1, 2, 3, 4]
    best = min(result.history, key=lambda epoch: epoch.val_loss)
    assert result.best_epoch == best.epoch
    restored = float(np.mean((model.predict(val.x) - val.y) ** 2))
    assert restored == pytest.approx(best.val_loss, rel=1e-5)


def test_save_and_load_round_trip_without_pickle(tmp_path: Path) -> None:
    model = NumpyBackend.build(spec_for("lstm", "tanh", num_layers=2), seed=1)
    model.save(tmp_path)
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(model.get_weights())
    loaded = NumpyBackend.load(tmp_path)
    x = split(5, seed=0).x
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.spec == model.spec


def test_load_names_the_missing_or_corrupt_file(tmp_path: Path) -> None:
    NumpyBackend.build(spec_for("gru", "tanh", num_layers=1), seed=1).save(tmp_path)
    weights = tmp_path / "weights.npz"
    weights.write_bytes(b"not an npz archive")
    with pytest.raises(UserError, match=f"model file corrupt: {weights}"):
        NumpyBackend.load(tmp_path)
    weights.unlink()
    with pytest.raises(UserError, match=f"model file missing: {weights}"):
        NumpyBackend.load(tmp_path)


def test_load_rejects_weights_of_another_shape(tmp_path: Path) -> None:
    NumpyBackend.build(spec_for("gru", "tanh", num_layers=1), seed=1).save(tmp_path)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec_file.read_text().replace('"hidden_size": 8', '"hidden_size": 9'))
    with pytest.raises(UserError, match="model file corrupt: .*weights.npz"):
        NumpyBackend.load(tmp_path)


def test_gpu_device_is_refused_with_the_key_to_change() -> None:
    with pytest.raises(UserError, match="framework.device='cuda'"):
        NumpyBackend.build(spec_for("rnn", "tanh", num_layers=1), seed=0, device="cuda")


def test_numpy_backend_imports_neither_torch_nor_tensorflow() -> None:
    code = (
        "import sys; from src.frameworks import backend_class; backend_class('numpy'); "
        "print(sorted({'torch', 'tensorflow', 'keras'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def task_spec(cell: str, activation: str, task: str, num_layers: int = 2) -> ModelSpec:
    """Classification: 2 features, 3 classes; language model: a vocabulary of 6 tokens."""
    sizes = (2, 3) if task == "classification" else (6, 6)
    return ModelSpec(
        cell=cell,
        hidden_size=8,
        num_layers=num_layers,
        activation=activation,
        dropout=0.0,
        num_features=sizes[0],
        num_outputs=sizes[1],
        head=tasks.get(task).head,
    )


def task_split(task: str, samples: int, seed: int) -> Split:
    """Class labels (samples, 1) for classification; token ids in and next ids out for a language model."""
    rng = np.random.default_rng(seed)
    if task == "classification":
        return Split(
            rng.normal(size=(samples, 6, 2)).astype(np.float32),
            rng.integers(0, 3, size=(samples, 1)).astype(np.float32),
        )
    return Split(
        rng.integers(0, 6, size=(samples, 6, 1)).astype(np.float32),
        rng.integers(0, 6, size=(samples, 6)).astype(np.float32),
    )


@pytest.mark.parametrize("task", ["classification", "language_model"])
@pytest.mark.parametrize("cell, activation", CELLS)
def test_same_weights_give_the_same_logits_for_the_new_heads(cell: str, activation: str, task: str) -> None:
    torch_model, numpy_model = twins(task_spec(cell, activation, task))
    x = task_split(task, 32, seed=0).x
    logits = numpy_model.predict(x)
    assert logits.shape == ((32, 3) if task == "classification" else (32, 6, 6))
    assert np.max(np.abs(logits - torch_model.predict(x))) <= 1e-5


@pytest.mark.parametrize("task", ["classification", "language_model"])
@pytest.mark.parametrize("cell, activation", [("rnn", "tanh"), ("lstm", "tanh"), ("gru", "tanh")])
def test_cross_entropy_training_steps_give_the_same_weights(cell: str, activation: str, task: str) -> None:
    torch_model, numpy_model = twins(task_spec(cell, activation, task))
    train, val = task_split(task, 32, seed=1), task_split(task, 16, seed=2)
    trainer = TrainerConfig(
        epochs=2, batch_size=16, optimizer=Optimizer.adam, lr=0.05, grad_clip=1.0, patience=0, seed=5
    )
    start = numpy_model.get_weights()
    torch_fit = torch_model.fit(train, val, trainer, lambda epoch: None)
    numpy_fit = numpy_model.fit(train, val, trainer, lambda epoch: None)
    # Adam divides each gradient by its running RMS, so float rounding in a weight whose gradients stay
    # near zero is amplified into its step: one weight of the LSTM language model ends 1.4e-5 apart on an
    # AMD EPYC (every other weight of every case under 5e-7; with SGD 1.5e-8), and which BLAS kernels
    # round how differs between CPUs. A wrong gradient moves a weight by the order of lr: the bound is a
    # thousandth of it, and every case moves some weight by more than lr.
    assert max_difference(torch_model.get_weights(), numpy_model.get_weights()) <= 1e-3 * trainer.lr
    assert max_difference(start, numpy_model.get_weights()) > trainer.lr
    for numpy_epoch, torch_epoch in zip(numpy_fit.history, torch_fit.history):
        assert numpy_epoch.train_loss == pytest.approx(torch_epoch.train_loss, rel=1e-5)
        assert numpy_epoch.val_loss == pytest.approx(torch_epoch.val_loss, rel=1e-5)
