"""The GRU cell, as torch's nn.GRU (gate order r, z, n, reset-after): forward over all steps, backward
through time.

Forward, for t = 0..T-1, starting from the zero state h[-1] = 0:
    xr, xz, xn = W_ih x[t] + b_ih                   split in H rows each
    hr, hz, hn = W_hh h[t-1] + b_hh
    r = σ(xr + hr)      z = σ(xz + hz)
    n = tanh(xn + r * hn)                           reset-after: r scales W_hn h + b_hn, bias included
    h[t] = (1 - z) * n + z * h[t-1]

Backward, given dh_out[t] = dL/dh[t] from above:
    dh    = dh_out[t] + dh_next                     from the step after, 0 after the last
    dnraw = dh * (1 - z) * (1 - n^2)                dL/d(xn + r * hn)
    dr    = dnraw * hn                              dz = dh * (h[t-1] - n)
    dxproj = (dr * r (1 - r),  dz * z (1 - z),  dnraw)          gradient of W_ih x[t] + b_ih
    dhproj = (dr * r (1 - r),  dz * z (1 - z),  dnraw * r)      gradient of W_hh h[t-1] + b_hh
    dh_next = dh * z + W_hh^T dhproj
    dW_ih = sum_t dxproj[t] x[t]^T     db_ih = sum_t dxproj[t]      dx[t] = W_ih^T dxproj[t]
    dW_hh = sum_t dhproj[t] h[t-1]^T   db_hh = sum_t dhproj[t]

Arrays are time-major: x (T, B, inputs), h (T, B, H).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from src.frameworks.numpy.activations import sigmoid


class Cache(NamedTuple):
    x: np.ndarray
    h: np.ndarray
    rz: np.ndarray  # r and z side by side
    n: np.ndarray
    hn: np.ndarray  # W_hn h[t-1] + b_hn, which r scaled
    Wih: np.ndarray
    Whh: np.ndarray
    h0: np.ndarray  # the state before the first step (zeros unless a caller carries one in)


def forward(
    x: np.ndarray,
    Wih: np.ndarray,
    Whh: np.ndarray,
    bih: np.ndarray,
    bhh: np.ndarray,
    state: tuple[np.ndarray, ...] = (),
) -> tuple[np.ndarray, Cache]:
    """Hidden states h (T, B, H) for inputs x (T, B, inputs) from `state` (h0,) (default zeros), and what
    backward needs; the last state is (h[-1],)."""
    T, B, _ = x.shape
    H = Whh.shape[1]
    xproj = (np.dot(x.reshape(T * B, -1), Wih.T) + bih).reshape(T, B, 3 * H)  # W_ih x[t] + b_ih, all t
    h, n, hn = (np.empty((T, B, H), dtype=x.dtype) for _ in range(3))
    rz = np.empty((T, B, 2 * H), dtype=x.dtype)
    hprev = h0 = state[0] if state else np.zeros((B, H), dtype=x.dtype)
    for t in range(T):
        hproj = np.dot(hprev, Whh.T) + bhh
        rz[t] = sigmoid(xproj[t, :, : 2 * H] + hproj[:, : 2 * H])
        r, z = rz[t, :, :H], rz[t, :, H:]
        hn[t] = hproj[:, 2 * H :]
        n[t] = np.tanh(xproj[t, :, 2 * H :] + r * hn[t])
        h[t] = (1 - z) * n[t] + z * hprev
        hprev = h[t]
    return h, Cache(x, h, rz, n, hn, Wih, Whh, h0)


def last_state(cache: Cache) -> tuple[np.ndarray, ...]:
    """The state after the last step, to carry into the next call of forward."""
    return (cache.h[-1],)


def backward(dh_out: np.ndarray, cache: Cache) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """dx and (dW_ih, dW_hh, db_ih, db_hh) from dh_out = dL/dh, shaped like h."""
    x, h, rz, n, hn, Wih, Whh, h0 = cache
    T, B, H = h.shape
    hprev = np.concatenate([h0[None], h[:-1]])  # h[t-1]: the initial state at t = 0
    dxproj = np.empty((T, B, 3 * H), dtype=h.dtype)
    dhproj = np.empty((T, B, 3 * H), dtype=h.dtype)
    dhnext = np.zeros_like(h[0])
    for t in reversed(range(T)):
        r, z = rz[t, :, :H], rz[t, :, H:]
        dh = dh_out[t] + dhnext
        dnraw = dh * (1 - z) * (1 - n[t] * n[t])
        dr = dnraw * hn[t]
        dz = dh * (hprev[t] - n[t])
        dxproj[t, :, :H] = dr * r * (1 - r)
        dxproj[t, :, H : 2 * H] = dz * z * (1 - z)
        dxproj[t, :, 2 * H :] = dnraw
        dhproj[t, :, : 2 * H] = dxproj[t, :, : 2 * H]
        dhproj[t, :, 2 * H :] = dnraw * r
        dhnext = dh * z + np.dot(dhproj[t], Whh)
    dxproj_all = dxproj.reshape(T * B, 3 * H)
    dhproj_all = dhproj.reshape(T * B, 3 * H)
    dWih = np.dot(dxproj_all.T, x.reshape(T * B, -1))
    dWhh = np.dot(dhproj_all.T, hprev.reshape(T * B, H))
    dx = np.dot(dxproj_all, Wih).reshape(T, B, -1)
    return dx, (dWih, dWhh, dxproj_all.sum(axis=0), dhproj_all.sum(axis=0))
