"""How much faster the vectorised NumPy backend trains than the notebook's one-sample-at-a-time loop.

Prints seconds per epoch (a training pass plus a validation pass, the median over a few epochs) of:
  loop   the notebook's plain tanh RNN trained one sequence at a time with Python loops over samples
         and steps, plain SGD after every sample, with its gradient made correct (dy is the prediction
         error, tanh' is 1 - h^2 of the activated state, and h[-1] at t = 0 is the zero state);
  numpy  our NumPy backend, batches of 32, Adam (the default trainer);
  torch  the torch backend on the CPU with the same model and trainer.
All three use hidden size 32. A second table shows how the loop/numpy ratio grows with the batch size:
a batch of 32 pays NumPy's fixed cost per call (about a microsecond) on 32 samples at once, while the
loop pays a smaller fixed cost per call on one sample, so at batch 32 the ratio is bounded well below 32
times the ratio of calls per step. Run: .venv/bin/python -m benchmarks.numpy_vs_loop
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from src.config import Optimizer, TrainerConfig
from src.data import next_number
from src.data import sum as sum_data
from src.data.base import Split, Splits
from src.data.scaling import Standardizer
from src.frameworks.numpy import NumpyBackend
from src.frameworks.spec import ModelSpec

HIDDEN_SIZE = 32
BATCH_SIZE = 32
BATCH_SIZES = (32, 128, 512)


class PerSampleRNN:
    """The notebook's model and training loop, one sequence and one step at a time, gradient fixed.

    h[t] = tanh(Wxh x[t] + Whh h[t-1] + bh), h[-1] = 0;  y = Why h[T-1] + by;  loss = mean((y - target)^2)
    """

    def __init__(self, features: int, outputs: int, rng: np.random.Generator, lr: float = 0.005) -> None:
        bound = 1 / math.sqrt(HIDDEN_SIZE)
        self.Wxh = rng.uniform(-bound, bound, (HIDDEN_SIZE, features))
        self.Whh = rng.uniform(-bound, bound, (HIDDEN_SIZE, HIDDEN_SIZE))
        self.bh = rng.uniform(-bound, bound, (HIDDEN_SIZE, 1))
        self.Why = rng.uniform(-bound, bound, (outputs, HIDDEN_SIZE))
        self.by = rng.uniform(-bound, bound, (outputs, 1))
        self.lr = lr

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        hs = {-1: np.zeros((HIDDEN_SIZE, 1))}  # the initial state, not the last step's
        for t in range(len(x)):
            hs[t] = np.tanh(self.Wxh @ x[t].reshape(-1, 1) + self.Whh @ hs[t - 1] + self.bh)
        return self.Why @ hs[len(x) - 1] + self.by, hs

    def train_step(self, x: np.ndarray, target: np.ndarray) -> float:
        y, hs = self.forward(x)
        error = y - target.reshape(-1, 1)
        dy = 2 * error / len(error)  # the prediction error, not the input
        dWhy, dby = dy @ hs[len(x) - 1].T, dy
        dWxh, dWhh, dbh = np.zeros_like(self.Wxh), np.zeros_like(self.Whh), np.zeros_like(self.bh)
        dh = self.Why.T @ dy
        for t in reversed(range(len(x))):
            dhraw = (1 - hs[t] * hs[t]) * dh  # tanh' from the activated state, applied once
            dWxh += dhraw @ x[t].reshape(1, -1)
            dWhh += dhraw @ hs[t - 1].T
            dbh += dhraw
            dh = self.Whh.T @ dhraw
        for param, grad in ((self.Wxh, dWxh), (self.Whh, dWhh), (self.bh, dbh), (self.Why, dWhy), (self.by, dby)):
            param -= self.lr * grad
        return float(np.mean(error**2))

    def epoch(self, train: Split, val: Split, rng: np.random.Generator) -> float:
        for index in rng.permutation(len(train)):
            self.train_step(train.x[index], train.y[index])
        return float(np.mean([np.mean((self.forward(x)[0].ravel() - y) ** 2) for x, y in zip(val.x, val.y)]))


def loop_seconds(train: Split, val: Split, epochs: int) -> float:
    model = PerSampleRNN(train.x.shape[2], train.y.shape[1], np.random.default_rng(0))
    rng = np.random.default_rng(0)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.epoch(train, val, rng)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def backend_seconds(backend_type: type, train: Split, val: Split, epochs: int, batch_size: int = BATCH_SIZE) -> float:
    spec = ModelSpec("rnn", HIDDEN_SIZE, 1, "tanh", 0.0, train.x.shape[2], train.y.shape[1])
    trainer = TrainerConfig(epochs=epochs, batch_size=batch_size, optimizer=Optimizer.adam, patience=0, seed=0)
    backend = backend_type.build(spec, seed=0, device="cpu")
    result = backend.fit(train, val, trainer, lambda epoch: None)
    return statistics.median(epoch.seconds for epoch in result.history)


def standardized(splits: Splits) -> tuple[Split, Split]:
    scaler = Standardizer.fit(splits.train)
    return scaler.transform(splits.train), scaler.transform(splits.val)


def main() -> None:
    from src.frameworks.torch import TorchBackend

    datasets = [
        ("next_number", next_number.generate(next_number.Params(), seed=0), 20, 20),
        ("sum, 5000 sequences", sum_data.generate(sum_data.Params(num_samples=5000), seed=0), 3, 7),
    ]
    header = (
        f"{'dataset':<22}{'train seqs':>11}{'steps':>6}{'loop s/epoch':>14}{'numpy s/epoch':>15}"
        f"{'torch s/epoch':>15}{'loop/numpy':>12}{'torch/numpy':>13}"
    )
    rows = [header, "-" * len(header)]
    loop_by_dataset = {}
    for name, splits, loop_epochs, backend_epochs in datasets:
        train, val = standardized(splits)
        loop = loop_by_dataset[name] = loop_seconds(train, val, loop_epochs)
        vectorised = backend_seconds(NumpyBackend, train, val, backend_epochs)
        torch = backend_seconds(TorchBackend, train, val, backend_epochs)
        rows.append(
            f"{name:<22}{len(train):>11}{train.x.shape[1]:>6}{loop:>14.4f}{vectorised:>15.4f}"
            f"{torch:>15.4f}{loop / vectorised:>11.1f}x{torch / vectorised:>12.2f}x"
        )
    print("\n".join(rows))
    print(
        f"hidden size {HIDDEN_SIZE}; numpy and torch: batch {BATCH_SIZE}, Adam; loop: one sample per SGD step; "
        "each epoch is a training pass and a validation pass, the median over the epochs run"
    )

    name, splits, _, backend_epochs = datasets[-1]
    train, val = standardized(splits)
    print(f"\n{name}: loop/numpy by numpy batch size")
    print(f"{'batch':>6}{'numpy s/epoch':>15}{'loop/numpy':>12}")
    for batch_size in BATCH_SIZES:
        vectorised = backend_seconds(NumpyBackend, train, val, backend_epochs, batch_size)
        print(f"{batch_size:>6}{vectorised:>15.4f}{loop_by_dataset[name] / vectorised:>11.1f}x")


if __name__ == "__main__":
    main()
