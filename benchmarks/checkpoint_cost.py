"""What a checkpoint each epoch costs (trainer.checkpoint_every=1 against 0), per framework.

The workflow benchmark's medium task (LSTM hidden 32, sine, 20,000 sequences of 50 steps, batch 64,
standardised), trained in this process for EPOCHS epochs with checkpoints on and off, the two
alternating (off, on, on, off, ...) so a burst of load from other jobs does not always hit one side.
One discarded fit first warms each framework up (graph tracing, allocator). Reported: the median
ratio of fit times (on / off), and the median time of one checkpoint write of this model (atomic
write with fsync), which is the whole of the cost: a checkpoint is written after the epoch's work.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.table import Row, at_most

EPOCHS = 2
PAIRS = 3
WRITES = 20
COST_AIM = 1.05


def rows(repeats: int = 1) -> list[Row]:
    from src.config import ModelConfig, TrainerConfig
    from src.data import sine
    from src.data.scaling import Standardizer
    from src.frameworks import backend_class
    from src.frameworks.base import cpu_threads
    from src.frameworks.checkpoint import Checkpoint
    from src.frameworks.spec import ModelSpec
    from src.frameworks.training import Checkpointing

    splits = sine.generate(sine.Params(num_samples=20000, seq_len=50), seed=0)
    standardizer = Standardizer.fit(splits.train)
    train, val = standardizer.transform(splits.train), standardizer.transform(splits.val)
    spec = ModelSpec.from_config(ModelConfig(hidden_size=32), train.x.shape[2], train.y.shape[1])
    trainer = TrainerConfig(epochs=EPOCHS, patience=0, batch_size=64)
    result = []
    for framework in ("numpy", "torch", "keras"):
        backend_type = backend_class(framework)
        times: dict[bool, list[float]] = {False: [], True: []}
        with tempfile.TemporaryDirectory() as scratch:
            with cpu_threads(1):  # warm-up, not timed
                backend_type.build(spec, seed=0, device="cpu").fit(
                    train, val, TrainerConfig(epochs=1, patience=0, batch_size=64), lambda _: None
                )
            for index in range(max(PAIRS, 2 * repeats)):
                for checkpointing_on in (False, True) if index % 2 == 0 else (True, False):
                    backend = backend_type.build(spec, seed=0, device="cpu")
                    where = Checkpointing(Path(scratch) / "checkpoint.npz", 1) if checkpointing_on else None
                    start = time.perf_counter()
                    with cpu_threads(1):
                        backend.fit(train, val, trainer, lambda _: None, where)
                    times[checkpointing_on].append(time.perf_counter() - start)
                    print(
                        f"  {framework} checkpoints {'on' if checkpointing_on else 'off'}: "
                        f"{times[checkpointing_on][-1]:.2f} s",
                        file=sys.stderr,
                        flush=True,
                    )
            checkpoint = Checkpoint.load(Path(scratch) / "checkpoint.npz")
            writes = []
            for _ in range(WRITES):
                start = time.perf_counter()
                checkpoint.save(Path(scratch) / "again.npz")
                writes.append(time.perf_counter() - start)
        on, off = statistics.median(times[True]), statistics.median(times[False])
        task = f"lstm-32, sine {len(train)}x50, {EPOCHS} epochs"
        result += [
            at_most(f"checkpoint each epoch / none ({framework})", task, on / off, COST_AIM, "x"),
            Row(f"one checkpoint write ({framework})", task, statistics.median(writes) * 1000, "ms"),
        ]
    return result
