"""The plain (Elman) recurrent cell, as torch's nn.RNN: forward over all steps, then backward through time.

Forward, for t = 0..T-1, starting from the zero state h[-1] = 0 (the initial state, not the last step):
    hraw[t] = W_ih x[t] + b_ih + W_hh h[t-1] + b_hh
    h[t]    = act(hraw[t])                          act = tanh or relu

Backward, given dh_out[t] = dL/dh[t] from above (the head, or the next layer up):
    dh[t]    = dh_out[t] + W_hh^T dhraw[t+1]        what flows back from the step after, 0 after the last
    dhraw[t] = dh[t] * (1 - h[t]^2)                 tanh' from the activated state h, not tanh(h) again
             = dh[t] * (h[t] > 0)                   relu'
    dW_ih = sum_t dhraw[t] x[t]^T      dW_hh = sum_t dhraw[t] h[t-1]^T      db_ih = db_hh = sum_t dhraw[t]
    dx[t] = W_ih^T dhraw[t]                         so that layers stack

Arrays are time-major, x (T, B, inputs) and h (T, B, H), with one sample per row, so each step is one
matrix product for the whole batch. Only the recurrence needs a loop over t: the input terms of all
steps, and the weight gradients summed over all steps, are each a single product. Products are np.dot,
as in min-char-rnn: with one input feature (most datasets here), `@` took 7x longer for W_ih x.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Cache(NamedTuple):
    x: np.ndarray
    h: np.ndarray
    Wih: np.ndarray
    Whh: np.ndarray
    activation: str
    h0: np.ndarray  # the state before the first step (zeros unless a caller carries one in)


def forward(
    x: np.ndarray,
    Wih: np.ndarray,
    Whh: np.ndarray,
    bih: np.ndarray,
    bhh: np.ndarray,
    activation: str = "tanh",
    state: tuple[np.ndarray, ...] = (),
) -> tuple[np.ndarray, Cache]:
    """Hidden states h (T, B, H) for inputs x (T, B, inputs) from `state` (h0,) (default zeros), and what
    backward needs; the last state is (h[-1],)."""
    T, B, _ = x.shape
    H = Whh.shape[1]
    xproj = (np.dot(x.reshape(T * B, -1), Wih.T) + (bih + bhh)).reshape(T, B, H)  # W_ih x[t] + b_ih + b_hh, all t
    h = np.empty((T, B, H), dtype=x.dtype)
    hprev = h0 = state[0] if state else np.zeros((B, H), dtype=x.dtype)
    for t in range(T):
        hraw = xproj[t] + np.dot(hprev, Whh.T)
        h[t] = np.tanh(hraw) if activation == "tanh" else np.maximum(hraw, 0)
        hprev = h[t]
    return h, Cache(x, h, Wih, Whh, activation, h0)


def last_state(cache: Cache) -> tuple[np.ndarray, ...]:
    """The state after the last step, to carry into the next call of forward."""
    return (cache.h[-1],)


def backward(dh_out: np.ndarray, cache: Cache) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """dx and (dW_ih, dW_hh, db_ih, db_hh) from dh_out = dL/dh, shaped like h."""
    x, h, Wih, Whh, activation, h0 = cache
    T, B, H = h.shape
    hprev = np.concatenate([h0[None], h[:-1]])  # h[t-1]: the initial state at t = 0
    dact = 1 - h * h if activation == "tanh" else (h > 0).astype(h.dtype)  # act'(hraw[t]) from h, all t
    dhraw = np.empty_like(h)
    dhnext = np.zeros_like(h[0])
    for t in reversed(range(T)):
        dh = dh_out[t] + dhnext
        dhraw[t] = dh * dact[t]
        dhnext = np.dot(dhraw[t], Whh)
    dhraw_all = dhraw.reshape(T * B, H)
    dWih = np.dot(dhraw_all.T, x.reshape(T * B, -1))
    dWhh = np.dot(dhraw_all.T, hprev.reshape(T * B, H))
    db = dhraw_all.sum(axis=0)
    dx = np.dot(dhraw_all, Wih).reshape(T, B, -1)
    return dx, (dWih, dWhh, db, db.copy())
