"""Weights between the canonical layout (PyTorch's state_dict) and Keras' per-layer weight lists.

Plain NumPy, no Keras import: a torch or numpy run can use it without loading TensorFlow, and tests
can check it without building a model. The canonical layout is described in
src/frameworks/spec.py; G is the number of gates (rnn 1, lstm 4, gru 3), H the hidden size.

What `model.get_weights()` returns for our Keras model, layer by layer (Dropout has no weights):

  SimpleRNN  kernel (inputs, H), recurrent_kernel (H, H), bias (H,)
  LSTM       kernel (inputs, 4H), recurrent_kernel (H, 4H), bias (4H,)
  GRU        kernel (inputs, 3H), recurrent_kernel (H, 3H), bias (2, 3H) = [input bias, recurrent bias]
             (reset_after=True, Keras' default and the only GRU that matches torch's)
  Dense      kernel (H, outputs), bias (outputs,)

Kernels are the transposes of torch's weight_ih / weight_hh. Gate order along the G*H axis:

  LSTM   torch (i, f, g, o)   Keras (i, f, c, o)   the same order: g and c are both the cell input
  GRU    torch (r, z, n)      Keras (z, r, h)      reset and update swap places; n and h are the same
         candidate, h' = (1 - z) * n + z * h in both

SimpleRNN and LSTM carry one bias where torch carries two (bias_ih and bias_hh), which only ever
appear summed. canonical → Keras adds them; Keras → canonical puts the sum in bias_ih and zeros in
bias_hh. That is the one place a round trip is not exact: the sums are.
"""

from __future__ import annotations

import numpy as np

from src.frameworks.spec import GATES, RECURRENT, ModelSpec, canonical_shapes

# Keras' gate blocks listed by the torch block each comes from (identity except the GRU's r/z swap).
TORCH_BLOCK_OF_KERAS_GATE = {"rnn": [0], "lstm": [0, 1, 2, 3], "gru": [1, 0, 2]}


def canonical_names(spec: ModelSpec) -> list[str]:
    """The canonical parameter names of `spec`'s network, in torch's state_dict order."""
    return list(canonical_shapes(spec))


def keras_shapes(spec: ModelSpec) -> list[tuple[int, ...]]:
    """The shapes of `model.get_weights()` for `spec`, in order."""
    gates_h = GATES[spec.cell] * spec.hidden_size
    bias = (2, gates_h) if spec.cell == "gru" else (gates_h,)
    shapes: list[tuple[int, ...]] = []
    for layer in range(spec.num_layers):
        inputs = spec.num_features if layer == 0 else spec.hidden_size
        shapes += [(inputs, gates_h), (spec.hidden_size, gates_h), bias]
    return shapes + [(spec.hidden_size, spec.num_outputs), (spec.num_outputs,)]


def canonical_to_keras(weights: dict[str, np.ndarray], spec: ModelSpec) -> list[np.ndarray]:
    """The list `model.set_weights` takes, from canonical weights (checked by name and shape)."""
    weights = _checked_canonical(weights, spec)
    order = _keras_order(spec)
    result: list[np.ndarray] = []
    for layer in range(spec.num_layers):
        w_ih, w_hh, b_ih, b_hh = (
            weights[f"{RECURRENT}.{kind}_l{layer}"][order] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        bias = np.stack([b_ih, b_hh]) if spec.cell == "gru" else b_ih + b_hh
        result += [w_ih.T, w_hh.T, bias]
    result += [weights["head.weight"].T, weights["head.bias"]]
    return [np.ascontiguousarray(array, dtype=np.float32) for array in result]


def keras_to_canonical(weights: list[np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    """Canonical weights from `model.get_weights()`; single biases go to bias_ih, zeros to bias_hh."""
    weights = _checked_keras(weights, spec)
    to_torch = np.argsort(_keras_order(spec))
    result: dict[str, np.ndarray] = {}
    for layer in range(spec.num_layers):
        kernel, recurrent_kernel, bias = weights[3 * layer : 3 * layer + 3]
        if spec.cell == "gru":
            b_ih, b_hh = bias[0], bias[1]
        else:
            b_ih, b_hh = bias, np.zeros_like(bias)
        result[f"{RECURRENT}.weight_ih_l{layer}"] = kernel.T[to_torch]
        result[f"{RECURRENT}.weight_hh_l{layer}"] = recurrent_kernel.T[to_torch]
        result[f"{RECURRENT}.bias_ih_l{layer}"] = b_ih[to_torch]
        result[f"{RECURRENT}.bias_hh_l{layer}"] = b_hh[to_torch]
    result["head.weight"] = weights[-2].T
    result["head.bias"] = weights[-1]
    return {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in result.items()}


def _keras_order(spec: ModelSpec) -> np.ndarray:
    """Row indices into a torch (G*H, ...) array that put its gate blocks in Keras' order."""
    hidden = spec.hidden_size
    return np.concatenate(
        [np.arange(block * hidden, (block + 1) * hidden) for block in TORCH_BLOCK_OF_KERAS_GATE[spec.cell]]
    )


def _checked_canonical(weights: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, np.ndarray]:
    expected = canonical_shapes(spec)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"canonical weights for {spec.cell} x{spec.num_layers} do not match: "
            f"missing {missing}, unexpected {unexpected}"
        )
    arrays = {name: np.asarray(weights[name], dtype=np.float32) for name in expected}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ValueError(f"canonical weight {name} has shape {arrays[name].shape}, expected {shape}")
    return arrays


def _checked_keras(weights: list[np.ndarray], spec: ModelSpec) -> list[np.ndarray]:
    expected = keras_shapes(spec)
    arrays = [np.asarray(array, dtype=np.float32) for array in weights]
    actual = [array.shape for array in arrays]
    if actual != expected:
        raise ValueError(f"Keras weights for {spec.cell} x{spec.num_layers} have shapes {actual}, expected {expected}")
    return arrays
