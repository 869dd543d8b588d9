"""torch on CUDA against torch on this machine's CPU: `make bench`'s CUDA rows.

Both sides are `python -m src.train` on the workflow piece's task (benchmarks.workflow.OVERRIDES: an
LSTM, 20,000 sine sequences, 5 epochs), one with `framework.device=cuda`, one with
`framework.device=cpu` (one CPU thread, the workflow's default), alternating within each repeat, each
against a copy of one store created beforehand. Reported: training seconds (first epoch's start to the
last epoch, from MLflow's timestamps), whole-process wall time, their CPU/CUDA ratios and the runs'
`device` tags. Without a CUDA device the piece prints one row that says it was skipped.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.table import Row
from benchmarks.workflow import WorkflowTimes, new_store, run_workflow

MEASURE = "torch on CUDA (framework.device=cuda)"


def rows(repeats: int = 1) -> list[Row]:
    import torch

    if not torch.cuda.is_available():
        return [Row(MEASURE, "torch", "skipped: torch sees no CUDA device")]
    runs: dict[str, list[WorkflowTimes]] = {"cuda": [], "cpu": []}
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-cuda-") as scratch:
        store = Path(scratch) / "template.db"
        new_store(store)
        for repeat in range(repeats):
            for device in ("cuda", "cpu") if repeat % 2 == 0 else ("cpu", "cuda"):
                print(f"   torch on {device} (repeat {repeat + 1}/{repeats}) ...", file=sys.stderr, flush=True)
                directory = Path(scratch) / f"{device}-{repeat}"
                runs[device].append(run_workflow("torch", directory, store, (f"framework.device={device}",)))

    def median(device: str, name: str) -> float:
        return statistics.median(getattr(run, name) for run in runs[device])

    return [
        Row("training, 5 epochs: CUDA", "torch", median("cuda", "training"), "s"),
        Row("training, 5 epochs: CPU, 1 thread", "torch", median("cpu", "training"), "s"),
        Row("training: CPU / CUDA", "torch", median("cpu", "training") / median("cuda", "training"), "x"),
        Row("workflow wall time: CUDA", "torch", median("cuda", "total"), "s"),
        Row("workflow wall time: CPU, 1 thread", "torch", median("cpu", "total"), "s"),
        Row("workflow wall time: CPU / CUDA", "torch", median("cpu", "total") / median("cuda", "total"), "x"),
        Row("device (runs' `device` tags: CUDA side)", "torch", ",".join(sorted({run.device for run in runs["cuda"]}))),
    ]
