"""SGD and Adam as torch.optim computes them, and clipping by global norm as clip_grad_norm_ does.

    SGD:   p = p - lr g
    Adam:  m = β1 m + (1 - β1) g        v = β2 v + (1 - β2) g^2          t = t + 1
           p = p - (lr / (1 - β1^t)) m / (sqrt(v) / sqrt(1 - β2^t) + eps)
    clip:  total = sqrt(sum of g^2 over every entry of every parameter)  (the norm of the per-parameter norms)
           coef = max_norm / (total + 1e-6);  g = coef g, only when coef < 1

They work on all parameters as one flat vector (`flatten`, `unflatten`): a step is then a dozen array
operations whatever the number of tensors, which matters for small networks where the per-call cost
of NumPy dominates. Steps return new vectors rather than change the ones they were given, so a
snapshot of the parameters stays what it was.
"""

from __future__ import annotations

import math

import numpy as np


def flatten(arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    """The arrays one after another, in the order of `shapes`, as one vector."""
    return np.concatenate([arrays[name].ravel() for name in shapes])


def unflatten(vector: np.ndarray, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The arrays that `flatten` put into `vector`, as views of it."""
    arrays, start = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        arrays[name] = vector[start : start + size].reshape(shape)
        start += size
    return arrays


class SGD:
    """torch.optim.SGD without momentum, dampening or weight decay."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def step(self, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        return p - self.lr * g

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Plain SGD keeps nothing between steps."""


class Adam:
    """torch.optim.Adam with its defaults (no weight decay, no amsgrad); the moments start at zero."""

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.t = 0

    def step(self, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        beta1, beta2 = self.betas
        if self.m is None or self.v is None:
            self.m, self.v = np.zeros_like(p), np.zeros_like(p)
        self.t += 1
        self.m = beta1 * self.m + (1 - beta1) * g
        self.v = beta2 * self.v + (1 - beta2) * g * g
        step_size = self.lr / (1 - beta1**self.t)
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.t)
        return p - step_size * self.m / (np.sqrt(self.v) / bias_correction2_sqrt + self.eps)

    def state(self) -> dict[str, np.ndarray]:
        """The moments and the step count: what a resumed fit needs to take the very same next step."""
        moments = {"m": self.m, "v": self.v} if self.m is not None and self.v is not None else {}
        return {**moments, "t": np.array(self.t)}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        self.m, self.v = (state["m"].copy(), state["v"].copy()) if "m" in state else (None, None)


def clip_grad_norm(g: np.ndarray, max_norm: float) -> tuple[np.ndarray, float]:
    """The gradient scaled to a global norm of at most `max_norm`, and the norm before clipping."""
    total_norm = math.sqrt(float(np.dot(g, g)))
    clip_coef = max_norm / (total_norm + 1e-6)
    return (g * clip_coef if clip_coef < 1 else g), total_norm
