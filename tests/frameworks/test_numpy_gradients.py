"""The NumPy backend's hand-written backward pass against central finite differences, in float64.

Every parameter of every cell, with one and two layers (and dropout between them, with the mask held
fixed), and the gradient with respect to the input, since that is what lets layers stack.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from src import tasks
from src.frameworks.initialization import initial_weights
from src.frameworks.numpy import network
from src.frameworks.spec import ModelSpec

STEP = 1e-5  # float64: truncation error ~STEP^2, rounding ~1e-16 / STEP
TOLERANCE = 1e-6
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """The largest entrywise |a - n| / (|a| + |n|); entries where both are below 1e-8 count as absolute."""
    return float(np.max(np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), 1e-8)))


def relu_pattern(params: dict[str, np.ndarray], spec: ModelSpec, x: np.ndarray) -> list[np.ndarray]:
    """Which relu units are on, layer by layer: a finite difference is only valid if it changes none."""
    _, cache = network.forward(params, spec, x, np.random.default_rng(0))
    return [layer.cell.h > 0 for layer in cache.layers]


def numeric_gradient(
    loss: Callable[[], float], value: np.ndarray, check: Callable[[], None] = lambda: None
) -> np.ndarray:
    """(loss(value + step) - loss(value - step)) / 2 step, entry by entry, restoring `value` after each;
    `check` runs after every shifted evaluation."""
    gradient = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        original = value[index]
        losses = []
        for shifted in (original + STEP, original - STEP):
            value[index] = shifted
            losses.append(loss())
            check()
        value[index] = original
        gradient[index] = (losses[0] - losses[1]) / (2 * STEP)
    return gradient


@pytest.mark.parametrize("num_layers, dropout", [(1, 0.0), (2, 0.0), (2, 0.3)])
@pytest.mark.parametrize("cell, activation", CELLS)
def test_backward_matches_finite_differences(cell: str, activation: str, num_layers: int, dropout: float) -> None:
    spec = ModelSpec(
        cell=cell,
        hidden_size=3,
        num_layers=num_layers,
        activation=activation,
        dropout=dropout,
        num_features=2,
        num_outputs=2,
    )
    rng = np.random.default_rng(7)
    params = initial_weights(spec, rng, "torch", np.float64)
    params = {name: value * 2 for name, value in params.items()}  # larger weights: gates away from 0.5
    x = rng.normal(size=(5, 4, 2))
    y = rng.normal(size=(5, 2))

    def loss() -> float:
        # A fresh generator with the same seed draws the same dropout masks on every call.
        return network.loss_and_gradients(params, spec, x, y, np.random.default_rng(0))[0]

    _, grads, dx = network.loss_and_gradients(params, spec, x, y, np.random.default_rng(0))
    pattern = relu_pattern(params, spec, x)

    def same_relu_pattern() -> None:
        if activation == "relu":
            after = relu_pattern(params, spec, x)
            assert all(np.array_equal(a, b) for a, b in zip(pattern, after)), "a step crossed a relu kink"

    assert set(grads) == set(params)
    if activation == "relu":  # the check is only meaningful if some units are on and some off
        assert 0 < np.mean(np.concatenate([p.ravel() for p in pattern])) < 1
    errors = {
        name: relative_error(grads[name], numeric_gradient(loss, params[name], same_relu_pattern)) for name in params
    }
    errors["x"] = relative_error(dx, numeric_gradient(loss, x, same_relu_pattern))
    assert max(errors.values()) < TOLERANCE, errors
    assert all(np.any(grads[name] != 0) for name in grads), "a gradient is all zero: the check would be empty"


def test_dropout_masks_scale_kept_units_and_change_between_steps() -> None:
    spec = ModelSpec(
        cell="rnn", hidden_size=50, num_layers=2, activation="tanh", dropout=0.4, num_features=1, num_outputs=1
    )
    params = initial_weights(spec, np.random.default_rng(0), "torch")
    x = np.ones((20, 3, 1), np.float32)
    dropout_rng = np.random.default_rng(0)
    _, first = network.forward(params, spec, x, dropout_rng)
    _, second = network.forward(params, spec, x, dropout_rng)
    mask = first.layers[1].mask
    assert first.layers[0].mask is None
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.6)}
    assert abs(np.mean(mask == 0) - 0.4) < 0.05
    assert not np.array_equal(mask, second.layers[1].mask)
    eval_prediction, eval_cache = network.forward(params, spec, x)
    assert eval_cache.layers[1].mask is None


SMOOTH_STEP = 2e-3  # the fourth-order difference's truncation error ~STEP^4, rounding ~1e-16 / STEP


def fourth_order_gradient(loss: Callable[[], float], value: np.ndarray) -> np.ndarray:
    """The central difference (-L(v+2s) + 8 L(v+s) - 8 L(v-s) + L(v-2s)) / 12 s, entry by entry.

    The cross-entropy heads spread the gradient thin (a token seen a few times, through saturated
    gates): entries of 1e-7 occur, where the two-point difference's rounding error (~1e-11) alone is
    1e-4 of the entry. With smooth cells this stencil's error is ~1e-13 at SMOOTH_STEP."""
    gradient = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        original = value[index]
        losses = []
        for shift in (2, 1, -1, -2):
            value[index] = original + shift * SMOOTH_STEP
            losses.append(loss())
        value[index] = original
        gradient[index] = (-losses[0] + 8 * losses[1] - 8 * losses[2] + losses[3]) / (12 * SMOOTH_STEP)
    return gradient


@pytest.mark.parametrize("num_layers, dropout", [(1, 0.0), (2, 0.3)])
@pytest.mark.parametrize("cell, activation", CELLS)
@pytest.mark.parametrize("task", ["classification", "language_model"])
def test_cross_entropy_heads_match_finite_differences(
    task: str, cell: str, activation: str, num_layers: int, dropout: float
) -> None:
    """Softmax cross-entropy on the last step (classification) and on every step (language model, one-hot
    token inputs): every parameter, and the input for classification (a token id has no gradient)."""
    rng = np.random.default_rng(7)
    if task == "classification":
        spec = ModelSpec(
            cell, 3, num_layers, activation, dropout, num_features=2, num_outputs=3, head=tasks.get(task).head
        )
        x, y = rng.normal(size=(5, 4, 2)), rng.integers(0, 3, size=(5, 1)).astype(float)
    else:
        spec = ModelSpec(
            cell, 3, num_layers, activation, dropout, num_features=5, num_outputs=5, head=tasks.get(task).head
        )
        x, y = rng.integers(0, 5, size=(5, 4, 1)).astype(float), rng.integers(0, 5, size=(5, 4)).astype(float)
    params = {name: value * 2 for name, value in initial_weights(spec, rng, "torch", np.float64).items()}

    def loss() -> float:
        return network.loss_and_gradients(params, spec, x, y, np.random.default_rng(0))[0]

    _, grads, dx = network.loss_and_gradients(params, spec, x, y, np.random.default_rng(0))
    # relu has kinks: there the two-point difference with its small step, checked not to cross one.
    pattern = relu_pattern(params, spec, x)

    def numeric(value: np.ndarray) -> np.ndarray:
        if activation != "relu":
            return fourth_order_gradient(loss, value)

        def same_relu_pattern() -> None:
            after = relu_pattern(params, spec, x)
            assert all(np.array_equal(a, b) for a, b in zip(pattern, after)), "a step crossed a relu kink"

        return numeric_gradient(loss, value, same_relu_pattern)

    errors = {name: relative_error(grads[name], numeric(params[name])) for name in params}
    if task == "classification":
        errors["x"] = relative_error(dx, numeric(x))
    assert max(errors.values()) < TOLERANCE, errors
    assert all(np.any(grads[name] != 0) for name in grads), "a gradient is all zero: the check would be empty"


def test_cross_entropy_is_the_mean_negative_log_softmax_of_the_truth() -> None:
    logits = np.array([[0.0, np.log(3.0)], [2.0, 2.0]])  # softmax rows (1/4, 3/4) and (1/2, 1/2)
    loss, dlogits = network.cross_entropy(logits, np.array([[1.0], [0.0]]))
    assert loss == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2)
    np.testing.assert_allclose(dlogits, [[0.125, -0.125], [-0.25, 0.25]])
