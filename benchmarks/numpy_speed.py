"""NumPy against the notebook's per-sample loop and against torch, as rows of the `make bench` table.

The measurements are benchmarks/numpy_vs_loop.py's (run it alone for its own tables, including the
batch-size sweep): seconds per epoch, a training pass plus a validation pass, the median over the
epochs run, of a tanh RNN with hidden size 32 on the `sum` dataset with 5,000 sequences of 10 steps;
numpy and torch with batches of 32 and Adam, the loop with one sample per SGD step. All three run in
this process one after the other, torch on the CPU.
"""

from __future__ import annotations

from benchmarks.numpy_vs_loop import BATCH_SIZE, backend_seconds, loop_seconds, standardized
from benchmarks.table import Row

LOOP_EPOCHS, BACKEND_EPOCHS = 3, 7


def rows() -> list[Row]:
    from src.data import sum as sum_data
    from src.frameworks.numpy import NumpyBackend
    from src.frameworks.torch import TorchBackend

    train, val = standardized(sum_data.generate(sum_data.Params(num_samples=5000), seed=0))
    loop = loop_seconds(train, val, LOOP_EPOCHS)
    vectorised = backend_seconds(NumpyBackend, train, val, BACKEND_EPOCHS)
    torch = backend_seconds(TorchBackend, train, val, BACKEND_EPOCHS)
    task = f"rnn, sum {len(train)} seqs"
    return [
        Row("s/epoch: notebook per-sample loop", task, loop, "s"),
        Row(f"s/epoch: numpy backend, batch {BATCH_SIZE}", task, vectorised, "s"),
        Row(f"s/epoch: torch backend (cpu), batch {BATCH_SIZE}", task, torch, "s"),
        Row("speed-up numpy over the per-sample loop", task, loop / vectorised, "x"),
        Row("torch / numpy time per epoch", task, torch / vectorised, "x"),
    ]
