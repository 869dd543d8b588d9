"""SGD and Adam as torch.optim computes them, and clipping by global norm as clip_grad_norm_ does.

    SGD:   p = p - lr g
    Adam:  m = β1 m + (1 - β1) g        v = β2 v + (1 - β2) g^2          t = t + 1
           p = p - (lr / (1 - β1^t)) m / (sqrt(v) / sqrt(1 - β2^t) + eps)
    clip:  total = sqrt(sum over parameters of |g|^2),  coef = max_norm / (total + 1e-6),
           every g scaled by coef only when coef < 1

Steps return new parameter dicts rather than change the arrays they were given, so a snapshot of the
parameters stays what it was.
"""

from __future__ import annotations

import math

import numpy as np

Arrays = dict[str, np.ndarray]


class SGD:
    """torch.optim.SGD without momentum, dampening or weight decay."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def step(self, params: Arrays, grads: Arrays) -> Arrays:
        return {name: p - self.lr * grads[name] for name, p in params.items()}


class Adam:
    """torch.optim.Adam with its defaults (no weight decay, no amsgrad); the moments start at zero."""

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m: Arrays = {}
        self.v: Arrays = {}
        self.t = 0

    def step(self, params: Arrays, grads: Arrays) -> Arrays:
        beta1, beta2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - beta1 ** self.t)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** self.t)
        updated = {}
        for name, p in params.items():
            g = grads[name]
            m = self.m[name] = beta1 * self.m.get(name, np.zeros_like(p)) + (1 - beta1) * g
            v = self.v[name] = beta2 * self.v.get(name, np.zeros_like(p)) + (1 - beta2) * g * g
            updated[name] = p - step_size * m / (np.sqrt(v) / bias_correction2_sqrt + self.eps)
        return updated


def clip_grad_norm(grads: Arrays, max_norm: float) -> tuple[Arrays, float]:
    """The gradients scaled to a global norm of at most `max_norm`, and the norm before clipping."""
    total_norm = math.sqrt(sum(float(np.sum(g * g, dtype=np.float64)) for g in grads.values()))
    clip_coef = max_norm / (total_norm + 1e-6)
    if clip_coef >= 1:
        return grads, total_norm
    return {name: g * clip_coef for name, g in grads.items()}, total_norm
