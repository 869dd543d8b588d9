"""model.init: the Keras and torch schemes, drawn once and the same in every framework."""

from __future__ import annotations

import math

import numpy as np
import pytest

from src import tasks
from src.frameworks import FRAMEWORKS, backend_class
from src.frameworks.initialization import initial_weights
from src.frameworks.spec import ModelSpec


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_keras_scheme_is_glorot_orthogonal_and_a_forget_bias_of_one(cell: str) -> None:
    spec = ModelSpec(cell, 16, 2, "tanh", 0.0, 3, 2)
    weights = initial_weights(spec, np.random.default_rng(0), "keras", np.float64)
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell] * 16
    for layer, inputs in ((0, 3), (1, 16)):
        recurrent = weights[f"recurrent.weight_hh_l{layer}"]
        np.testing.assert_allclose(recurrent.T @ recurrent, np.eye(16), atol=1e-12)  # orthonormal columns
        assert np.abs(weights[f"recurrent.weight_ih_l{layer}"]).max() <= math.sqrt(6 / (inputs + gates))
        expected_bias = np.zeros(gates)
        if cell == "lstm":
            expected_bias[16:32] = 1.0  # the forget gate, in torch's order i, f, g, o
        np.testing.assert_array_equal(weights[f"recurrent.bias_ih_l{layer}"], expected_bias)
        np.testing.assert_array_equal(weights[f"recurrent.bias_hh_l{layer}"], np.zeros(gates))
    assert np.abs(weights["head.weight"]).max() <= math.sqrt(6 / (16 + 2))
    np.testing.assert_array_equal(weights["head.bias"], np.zeros(2))


def test_the_torch_scheme_is_uniform_within_one_over_sqrt_hidden() -> None:
    spec = ModelSpec("lstm", 25, 1, "tanh", 0.0, 3, 2)
    weights = initial_weights(spec, np.random.default_rng(0), "torch")
    values = np.concatenate([value.ravel() for value in weights.values()])
    assert np.abs(values).max() <= 0.2 and np.abs(values).max() > 0.19  # U(±1/5), filled out
    assert abs(values.mean()) < 0.01


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("scheme", ["keras", "torch"])
def test_every_framework_starts_from_the_same_weights(cell: str, scheme: str) -> None:
    spec = ModelSpec(cell, 8, 2, "tanh", 0.0, 5, 5, tasks.get("language_model").head)
    started = {name: backend_class(name).build(spec, 7, "cpu", scheme).get_weights() for name in FRAMEWORKS}
    reference = started["numpy"]
    for name, weights in started.items():
        for key, value in weights.items():
            if ".bias_" in key and cell != "gru" and name == "keras":
                continue  # Keras' SimpleRNN and LSTM hold only the sum of the two biases: compared below
            np.testing.assert_allclose(value, reference[key], atol=1e-7, err_msg=f"{name} {key}")
        for layer in range(2):
            total = weights[f"recurrent.bias_ih_l{layer}"] + weights[f"recurrent.bias_hh_l{layer}"]
            reference_total = reference[f"recurrent.bias_ih_l{layer}"] + reference[f"recurrent.bias_hh_l{layer}"]
            np.testing.assert_allclose(total, reference_total, atol=1e-7)
    other_seed = backend_class("numpy").build(spec, 8, "cpu", scheme).get_weights()
    assert not np.array_equal(other_seed["head.weight"], reference["head.weight"])


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown initialisation 'xavier'"):
        initial_weights(ModelSpec("rnn", 4, 1, "tanh", 0.0, 1, 1), np.random.default_rng(0), "xavier")


def three_steps(framework: str, cell: str, optimizer: str) -> dict[str, np.ndarray]:
    """The weights after three batches from the same start and batches, biases summed (Keras' form)."""
    from src.config import Optimizer, TrainerConfig
    from src.data.base import as_split

    rng = np.random.default_rng(0)
    train = as_split(rng.normal(size=(24, 6, 2)), rng.normal(size=(24, 1)))
    trainer = TrainerConfig(
        epochs=1, batch_size=8, optimizer=Optimizer(optimizer), lr=0.05, grad_clip=0.0, patience=0, checkpoint_every=0
    )
    backend = backend_class(framework).build(ModelSpec(cell, 8, 1, "tanh", 0.0, 2, 1), 3, "cpu", "keras")
    backend.fit(train, train, trainer, lambda epoch: None)
    weights = backend.get_weights()
    weights["bias"] = weights.pop("recurrent.bias_ih_l0") + weights.pop("recurrent.bias_hh_l0")
    return weights


def largest_difference(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(first[name] - second[name]).max()) for name in first)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_how_far_the_frameworks_training_steps_differ(cell: str, optimizer: str) -> None:
    """numpy and torch take the same steps; Keras differs where the README says, by what it says: its
    SimpleRNN and LSTM have one bias where torch has two (SGD moves torch's sum twice as fast), and
    Keras 3's Adam adds epsilon before its bias correction (small gradients step differently)."""
    numpy_steps, torch_steps, keras_steps = (three_steps(name, cell, optimizer) for name in ("numpy", "torch", "keras"))
    assert largest_difference(numpy_steps, torch_steps) < 1e-6
    keras_gap = largest_difference(numpy_steps, keras_steps)
    if cell == "gru" and optimizer == "sgd":
        assert keras_gap < 1e-6  # Keras' GRU keeps two biases: the same steps
    else:
        assert 1e-3 < keras_gap < 0.3  # measured: 3e-2 to 6e-2 (SGD), 1e-2 to 0.18 (Adam)
