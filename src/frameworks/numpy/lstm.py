"""The LSTM cell, as torch's nn.LSTM (gate order i, f, g, o): forward over all steps, backward through time.

Forward, for t = 0..T-1, starting from zero states h[-1] = c[-1] = 0:
    a[t] = W_ih x[t] + b_ih + W_hh h[t-1] + b_hh    split into a_i, a_f, a_g, a_o (H rows each)
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c[t] = f * c[t-1] + i * g
    h[t] = o * tanh(c[t])

Backward, given dh_out[t] = dL/dh[t] from above:
    dh  = dh_out[t] + W_hh^T da[t+1]                from the step after, 0 after the last
    dc  = dc_next + dh * o * (1 - tanh(c[t])^2)     dc_next = dc[t+1] * f[t+1], 0 after the last
    da_i = dc * g * i (1 - i)         da_f = dc * c[t-1] * f (1 - f)
    da_g = dc * i * (1 - g^2)         da_o = dh * tanh(c[t]) * o (1 - o)
    dW_ih = sum_t da[t] x[t]^T      dW_hh = sum_t da[t] h[t-1]^T      db_ih = db_hh = sum_t da[t]
    dx[t] = W_ih^T da[t]

Arrays are time-major: x (T, B, inputs), h and c (T, B, H), gates (T, B, 4H).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from src.frameworks.numpy.activations import sigmoid


class Cache(NamedTuple):
    x: np.ndarray
    h: np.ndarray
    c: np.ndarray
    tanh_c: np.ndarray
    gates: np.ndarray  # activated i, f, g, o side by side
    Wih: np.ndarray
    Whh: np.ndarray
    h0: np.ndarray  # the states before the first step (zeros unless a caller carries them in)
    c0: np.ndarray


def forward(
    x: np.ndarray,
    Wih: np.ndarray,
    Whh: np.ndarray,
    bih: np.ndarray,
    bhh: np.ndarray,
    state: tuple[np.ndarray, ...] = (),
) -> tuple[np.ndarray, Cache]:
    """Hidden states h (T, B, H) for inputs x (T, B, inputs) from `state` (h0, c0) (default zeros), and
    what backward needs; the last state is (h[-1], c[-1])."""
    T, B, _ = x.shape
    H = Whh.shape[1]
    xproj = (np.dot(x.reshape(T * B, -1), Wih.T) + (bih + bhh)).reshape(T, B, 4 * H)  # W_ih x[t] + b, all t
    h, c, tanh_c = (np.empty((T, B, H), dtype=x.dtype) for _ in range(3))
    gates = np.empty((T, B, 4 * H), dtype=x.dtype)
    hprev, cprev = state if state else (np.zeros((B, H), dtype=x.dtype),) * 2
    h0, c0 = hprev, cprev
    for t in range(T):
        a = xproj[t] + np.dot(hprev, Whh.T)
        gates[t] = sigmoid(a)  # i, f, o are sigmoids...
        gates[t, :, 2 * H : 3 * H] = np.tanh(a[:, 2 * H : 3 * H])  # ...and g a tanh
        i, f, g, o = gate_views(gates[t], H)
        c[t] = f * cprev + i * g
        tanh_c[t] = np.tanh(c[t])
        h[t] = o * tanh_c[t]
        hprev, cprev = h[t], c[t]
    return h, Cache(x, h, c, tanh_c, gates, Wih, Whh, h0, c0)


def gate_views(gates: np.ndarray, H: int) -> tuple[np.ndarray, ...]:
    """i, f, g, o of one step's gates (B, 4H), as views. Plain slices: `np.split` cost 11 us a call
    against 1.6 us, twice per time step; the bare NumPy benchmark trained about 10 % faster with slices
    (three alternating pairs, README "Performance")."""
    return gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]


def last_state(cache: Cache) -> tuple[np.ndarray, ...]:
    """The state after the last step, to carry into the next call of forward."""
    return (cache.h[-1], cache.c[-1])


def backward(dh_out: np.ndarray, cache: Cache) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """dx and (dW_ih, dW_hh, db_ih, db_hh) from dh_out = dL/dh, shaped like h."""
    x, h, c, tanh_c, gates, Wih, Whh, h0, c0 = cache
    T, B, H = h.shape
    hprev = np.concatenate([h0[None], h[:-1]])  # h[t-1] and c[t-1]: the initial states at t = 0
    cprev = np.concatenate([c0[None], c[:-1]])
    da = np.empty_like(gates)
    dhnext = dcnext = np.zeros_like(h[0])
    for t in reversed(range(T)):
        i, f, g, o = gate_views(gates[t], H)
        dh = dh_out[t] + dhnext
        dc = dcnext + dh * o * (1 - tanh_c[t] * tanh_c[t])
        da[t, :, :H] = dc * g * i * (1 - i)
        da[t, :, H : 2 * H] = dc * cprev[t] * f * (1 - f)
        da[t, :, 2 * H : 3 * H] = dc * i * (1 - g * g)
        da[t, :, 3 * H :] = dh * tanh_c[t] * o * (1 - o)
        dhnext = np.dot(da[t], Whh)
        dcnext = dc * f
    da_all = da.reshape(T * B, 4 * H)
    dWih = np.dot(da_all.T, x.reshape(T * B, -1))
    dWhh = np.dot(da_all.T, hprev.reshape(T * B, H))
    db = da_all.sum(axis=0)
    dx = np.dot(da_all, Wih).reshape(T, B, -1)
    return dx, (dWih, dWhh, db, db.copy())
