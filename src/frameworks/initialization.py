"""The network's initial weights, drawn once in NumPy in the canonical layout and loaded by every
backend, so numpy, torch and keras start from the same weights for the same seed and scheme.

Two schemes (`model.init`):

  keras   what Keras' recurrent layers do: input kernels Glorot-uniform, U(±sqrt(6 / (inputs + G*H))),
          recurrent kernels orthogonal (the G*H × H matrix has orthonormal columns), biases zero except
          the LSTM's forget gate, 1 (Jozefowicz et al., 2015); the head Glorot-uniform with a zero bias.
  torch   what torch.nn.RNN/LSTM/GRU and nn.Linear do: every parameter U(±1/sqrt(H)) (the head's
          fan-in is H too).

Keras and SimpleRNN/LSTM carry one bias where the canonical layout has two (bias_ih and bias_hh, only
ever summed): the forget-gate 1 goes into bias_ih, so the sum is the same in every framework.
"""

from __future__ import annotations

import math

import numpy as np

from src.config import Init
from src.frameworks.spec import GATES, RECURRENT, ModelSpec, canonical_shapes

SCHEMES = tuple(scheme.value for scheme in Init)


def initial_weights(
    spec: ModelSpec, rng: np.random.Generator, scheme: str = "keras", dtype: type = np.float32
) -> dict[str, np.ndarray]:
    """Every canonical parameter of `spec`, drawn from `rng` by `scheme`, in state_dict order."""
    if scheme == "torch":
        bound = 1 / math.sqrt(spec.hidden_size)
        return {name: rng.uniform(-bound, bound, shape).astype(dtype) for name, shape in canonical_shapes(spec).items()}
    if scheme != "keras":
        raise ValueError(f"unknown initialisation {scheme!r}: one of {', '.join(SCHEMES)}")
    weights: dict[str, np.ndarray] = {}
    hidden, gates = spec.hidden_size, GATES[spec.cell] * spec.hidden_size
    for layer in range(spec.num_layers):
        inputs = spec.num_features if layer == 0 else hidden
        weights[f"{RECURRENT}.weight_ih_l{layer}"] = glorot_uniform(rng, gates, inputs)
        weights[f"{RECURRENT}.weight_hh_l{layer}"] = orthogonal(rng, gates, hidden)
        bias_ih = np.zeros(gates)
        if spec.cell == "lstm":
            bias_ih[hidden : 2 * hidden] = 1.0  # the forget gate (gate order i, f, g, o)
        weights[f"{RECURRENT}.bias_ih_l{layer}"] = bias_ih
        weights[f"{RECURRENT}.bias_hh_l{layer}"] = np.zeros(gates)
    weights["head.weight"] = glorot_uniform(rng, spec.num_outputs, hidden)
    weights["head.bias"] = np.zeros(spec.num_outputs)
    return {name: value.astype(dtype) for name, value in weights.items()}


def glorot_uniform(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    """A (fan_out, fan_in) matrix U(±sqrt(6 / (fan_in + fan_out))): torch's layout of Keras' kernel."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_out, fan_in))


def orthogonal(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """A (rows, columns) matrix with orthonormal columns (rows >= columns), uniformly distributed: the
    Q of a Gaussian matrix's QR decomposition with the signs of R's diagonal taken out."""
    q, r = np.linalg.qr(rng.normal(size=(rows, columns)))
    return q * np.sign(np.diag(r))
