"""The canonical ↔ Keras weight converter: plain NumPy, so these tests never load TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from src.frameworks import convert
from src.frameworks.spec import ModelSpec
from src.paths import PROJECT_ROOT

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


def spec_for(cell: str, num_layers: int, activation: str = "tanh", hidden_size: int = 4) -> ModelSpec:
    return ModelSpec(
        cell=cell,
        hidden_size=hidden_size,
        num_layers=num_layers,
        activation=activation,
        dropout=0.0,
        num_features=3,
        num_outputs=2,
    )


def random_canonical(spec: ModelSpec, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape).astype(np.float32) for name, shape in convert.canonical_shapes(spec).items()}


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("cell, activation", CELLS)
def test_canonical_to_keras_and_back_is_exact_except_summed_biases(cell: str, activation: str, num_layers: int) -> None:
    spec = spec_for(cell, num_layers, activation)
    weights = random_canonical(spec)
    keras_weights = convert.canonical_to_keras(weights, spec)
    assert [w.shape for w in keras_weights] == convert.keras_shapes(spec)
    assert all(w.dtype == np.float32 for w in keras_weights)

    back = convert.keras_to_canonical(keras_weights, spec)
    assert list(back) == convert.canonical_names(spec)
    for name, value in weights.items():
        if cell != "gru" and ".bias_" in name:
            continue  # one Keras bias holds the sum: compared below
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    if cell != "gru":
        for layer in range(num_layers):
            ih, hh = f"recurrent.bias_ih_l{layer}", f"recurrent.bias_hh_l{layer}"
            np.testing.assert_allclose(back[ih] + back[hh], weights[ih] + weights[hh], rtol=0, atol=1e-6)
            np.testing.assert_array_equal(back[hh], 0.0)


@pytest.mark.parametrize("cell, activation", CELLS)
def test_keras_to_canonical_and_back_is_exact(cell: str, activation: str) -> None:
    spec = spec_for(cell, 2, activation)
    rng = np.random.default_rng(1)
    keras_weights = [rng.normal(size=shape).astype(np.float32) for shape in convert.keras_shapes(spec)]
    again = convert.canonical_to_keras(convert.keras_to_canonical(keras_weights, spec), spec)
    for before, after in zip(keras_weights, again, strict=True):
        np.testing.assert_array_equal(after, before)


def blocks(hidden: int, count: int) -> np.ndarray:
    """A bias whose gate block k holds the value k + 1, so gate positions are visible."""
    return np.repeat(np.arange(1, count + 1, dtype=np.float32), hidden)


def test_gru_swaps_reset_and_update_gates_and_keeps_both_biases() -> None:
    spec = spec_for("gru", 1, hidden_size=2)
    weights = random_canonical(spec)
    weights["recurrent.bias_ih_l0"] = blocks(2, 3)  # torch (r, z, n) = 1, 2, 3
    weights["recurrent.bias_hh_l0"] = 10 * blocks(2, 3)
    kernel, recurrent_kernel, bias, _, _ = convert.canonical_to_keras(weights, spec)
    np.testing.assert_array_equal(bias, [[2, 2, 1, 1, 3, 3], [20, 20, 10, 10, 30, 30]])  # Keras (z, r, h)
    np.testing.assert_array_equal(kernel[:, :2], weights["recurrent.weight_ih_l0"][2:4].T)
    np.testing.assert_array_equal(recurrent_kernel[:, 2:4], weights["recurrent.weight_hh_l0"][:2].T)


def test_lstm_keeps_gate_order_and_sums_biases() -> None:
    spec = spec_for("lstm", 1, hidden_size=2)
    weights = random_canonical(spec)
    weights["recurrent.bias_ih_l0"] = blocks(2, 4)
    weights["recurrent.bias_hh_l0"] = 10 * blocks(2, 4)
    kernel, _, bias, head_kernel, head_bias = convert.canonical_to_keras(weights, spec)
    np.testing.assert_array_equal(bias, 11 * blocks(2, 4))
    np.testing.assert_array_equal(kernel, weights["recurrent.weight_ih_l0"].T)
    np.testing.assert_array_equal(head_kernel, weights["head.weight"].T)
    np.testing.assert_array_equal(head_bias, weights["head.bias"])


def test_wrong_names_or_shapes_are_rejected_with_the_name() -> None:
    spec = spec_for("lstm", 2)
    weights = random_canonical(spec)
    with pytest.raises(ValueError, match="recurrent.weight_hh_l1"):
        convert.canonical_to_keras({k: v for k, v in weights.items() if k != "recurrent.weight_hh_l1"}, spec)
    with pytest.raises(ValueError, match="head.bias"):
        convert.canonical_to_keras({**weights, "head.bias": np.zeros(5, np.float32)}, spec)
    with pytest.raises(ValueError, match="expected"):
        convert.keras_to_canonical(convert.canonical_to_keras(weights, spec)[:-1], spec)


def test_importing_the_converter_loads_neither_keras_nor_tensorflow() -> None:
    code = (
        "import sys, src.frameworks.convert; "
        "loaded = [m for m in ('keras', 'tensorflow') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
