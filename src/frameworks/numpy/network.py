"""Stacked recurrent layers read out by a dense head, with MSE or softmax cross-entropy loss, forward and backward.

    h_0 = cell_0(x)            h_k = cell_k(dropout(h_{k-1}))          every step, layer by layer
    prediction = W h_L[T-1] + b                                         regression, classification: last step
    prediction[t] = W h_L[t] + b                                        language model: every step t

    MSE (regression), as nn.MSELoss:
      loss = mean((prediction - y)^2)                                   over batch and outputs
      dprediction = 2 (prediction - y) / (B * outputs)                  the prediction error, not the input
    softmax cross-entropy (classification, language model), as nn.CrossEntropyLoss, over N targets
    (N = B for a class per sequence, B * T for a token per step), prediction = logits:
      p = softmax(prediction)           loss = -mean(log p[y])          y the target class (token) ids
      dprediction = (p - onehot(y)) / N

    dW = sum dprediction^T h_L      db = sum dprediction                over the steps the head read
    dh_L = dprediction W at the steps the head read, 0 at the others
    then each cell's backward from the top layer down; its dx is the layer below's dh (times the mask).
    A language model's token ids enter one-hot encoded: x becomes onehot(ids) (B, T, vocabulary).

Parameters live in one dict under torch's state_dict names and shapes (src/frameworks/spec.py), so
weights move between the frameworks unchanged. Everything follows the parameters' dtype: float32 to
train, float64 for the gradient check.
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple, Optional

import numpy as np

from src.frameworks.numpy import gru, lstm, rnn
from src.frameworks.spec import ModelSpec, canonical_shapes

CELLS: dict[str, ModuleType] = {"rnn": rnn, "lstm": lstm, "gru": gru}
# Rows per forward call when predicting (the validation pass, evaluation): 256 rows keep a step's
# arrays in the CPU's cache. 3,000 sequences of 50 steps through a 32-unit LSTM: 0.15 s in slices of
# 256 rows against 0.41 s in one call of 4,096 (most of it page faults on the cache arrays), and a
# peak of 59 MiB against 247 MiB.
INFERENCE_BATCH = 256
CELL_PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # the order cells take and return


class Layer(NamedTuple):
    mask: Optional[np.ndarray]  # the dropout mask applied to this layer's inputs, if any
    cell: tuple


class Cache(NamedTuple):
    read: np.ndarray  # the top layer's states the head reads: (B, H) at the last step, or (T, B, H)
    head_weight: np.ndarray
    steps: int
    layers: list[Layer]
    cell: ModuleType


def check(params: dict[str, np.ndarray], spec: ModelSpec) -> None:
    """Raise ValueError unless `params` has exactly the names and shapes that `spec` needs."""
    expected = canonical_shapes(spec)
    if set(params) != set(expected):
        missing, unexpected = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
        raise ValueError(f"parameter names differ: missing {missing}, unexpected {unexpected}")
    for name, shape in expected.items():
        if np.shape(params[name]) != shape:
            raise ValueError(f"{name} has shape {np.shape(params[name])}, expected {shape}")


def forward(
    params: dict[str, np.ndarray],
    spec: ModelSpec,
    x: np.ndarray,
    dropout_rng: Optional[np.random.Generator] = None,
    states: Optional[list[tuple[np.ndarray, ...]]] = None,
) -> tuple[np.ndarray, Cache]:
    """Predictions (B, outputs), or (B, T, outputs) when `spec.every_step`, for x (B, T, features) or token
    ids (B, T, 1). Pass `dropout_rng` only when training: it draws the inverted-dropout masks between
    stacked layers; without it the network is in eval mode. Each layer starts from its entry of `states`
    (default zeros); `last_states(cache)` are the states to carry on from."""
    head_weight = params["head.weight"]
    x = np.asarray(x)
    if spec.token_inputs:
        x = np.eye(spec.num_features, dtype=head_weight.dtype)[x[..., 0].astype(np.int64)]
    inputs = np.ascontiguousarray(np.asarray(x, dtype=head_weight.dtype).transpose(1, 0, 2))  # time-major
    cell = CELLS[spec.cell]
    extra = {"activation": spec.activation} if spec.cell == "rnn" else {}
    keep = 1 - spec.dropout
    layers = []
    for k in range(spec.num_layers):
        mask = None
        if k > 0 and dropout_rng is not None and spec.dropout > 0:
            mask = (dropout_rng.random(inputs.shape) < keep).astype(inputs.dtype) / keep
            inputs = inputs * mask
        weights = [params[f"recurrent.{name}_l{k}"] for name in CELL_PARAMETERS]
        inputs, cell_cache = cell.forward(inputs, *weights, **extra, state=states[k] if states else ())
        layers.append(Layer(mask, cell_cache))
    read = inputs if spec.every_step else inputs[-1]
    prediction = np.dot(read, head_weight.T) + params["head.bias"]
    if spec.every_step:
        prediction = prediction.transpose(1, 0, 2)  # back to batch-major (B, T, outputs)
    return prediction, Cache(read, head_weight, len(inputs), layers, cell)


def last_states(cache: Cache) -> list[tuple[np.ndarray, ...]]:
    """Every layer's state after the last step: feeding them back with the next inputs continues the
    sequence exactly where a whole-sequence forward would be."""
    return [cache.cell.last_state(layer.cell) for layer in cache.layers]


def mse(prediction: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The loss and its gradient with respect to the prediction."""
    error = prediction - np.asarray(y, dtype=prediction.dtype)
    return float(np.mean(error * error)), 2 * error / error.size


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean softmax cross-entropy of `logits` (..., classes) against the ids `y` (any shape holding
    one id per row of logits), and its gradient with respect to the logits."""
    labels = np.asarray(y).reshape(logits.shape[:-1]).astype(np.int64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    chosen = np.take_along_axis(log_p, labels[..., None], axis=-1)
    dlogits = np.exp(log_p)
    np.put_along_axis(dlogits, labels[..., None], np.take_along_axis(dlogits, labels[..., None], axis=-1) - 1, axis=-1)
    return float(-np.mean(chosen)), dlogits / labels.size


LOSSES = {"mse": mse, "cross_entropy": cross_entropy}


def backward(dprediction: np.ndarray, cache: Cache) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Gradients of every parameter (canonical names) and of the network's input (B, T, features)
    (for token ids: of their one-hot encoding)."""
    read, outputs = cache.read, cache.head_weight.shape[0]
    if read.ndim == 3:  # the head read every step: time-major, like the states
        dprediction = dprediction.transpose(1, 0, 2)
    grads = {
        "head.weight": np.dot(dprediction.reshape(-1, outputs).T, read.reshape(-1, read.shape[-1])),
        "head.bias": dprediction.reshape(-1, outputs).sum(axis=0),
    }
    dh_out = np.zeros((cache.steps, *read.shape[-2:]), dtype=read.dtype)
    if read.ndim == 3:
        dh_out[:] = np.dot(dprediction, cache.head_weight)
    else:
        dh_out[-1] = np.dot(dprediction, cache.head_weight)
    for k in reversed(range(len(cache.layers))):
        mask, cell_cache = cache.layers[k]
        dinputs, dweights = cache.cell.backward(dh_out, cell_cache)
        grads.update({f"recurrent.{name}_l{k}": dweight for name, dweight in zip(CELL_PARAMETERS, dweights)})
        dh_out = dinputs if mask is None else dinputs * mask
    return grads, dh_out.transpose(1, 0, 2)


def loss_and_gradients(
    params: dict[str, np.ndarray],
    spec: ModelSpec,
    x: np.ndarray,
    y: np.ndarray,
    dropout_rng: Optional[np.random.Generator] = None,
) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """One training step's loss, parameter gradients and input gradient."""
    prediction, cache = forward(params, spec, x, dropout_rng)
    loss, dprediction = LOSSES[spec.loss](prediction, y)
    grads, dx = backward(dprediction, cache)
    return loss, grads, dx
