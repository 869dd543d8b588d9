"""`make bench`: every measurement in one table, with a line describing the machine.

Pieces (each a module here with a `rows()` function):
  workflow     `python -m src.train` against a bare script per framework on a medium task: the ratio,
               where the extra seconds go, start-up to the first epoch, peak memory, the torch device
  numpy_speed  the NumPy backend against the notebook's per-sample loop and against torch
  sweep        8 jobs with the joblib launcher on 2 workers against the same 8 sequentially
  checkpoints  what a checkpoint each epoch costs on the medium task, per framework
  cuda         torch on CUDA against torch on the CPU, on the workflow's task (one "skipped" row
               when torch sees no CUDA device)
  new_store    a new SQLite store: MLflow's migrations against a copy of the migrated schema
Run: .venv/bin/python -m benchmarks.run [--repeats N] [--only workflow,numpy_speed,sweep,checkpoints,cuda,new_store]
Progress goes to stderr, the table to stdout; the last line says how much CPU other processes took
meanwhile (0 on an idle machine). Timings on a shared machine are noisy: compare the ratios (each
measured within one run, the compared commands alternating), not the seconds across runs.
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks import checkpoint_cost, cuda, new_store, numpy_speed, sweep, workflow
from benchmarks.table import Row, cpu_seconds_busy, format_table, machine, others_load

PIECES = ("workflow", "numpy_speed", "sweep", "checkpoints", "cuda", "new_store")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--repeats", type=int, default=1, help="repeats of the workflow and sweep measurements (medians are reported)"
    )
    parser.add_argument("--only", default=",".join(PIECES), help=f"comma-separated subset of {', '.join(PIECES)}")
    args = parser.parse_args(argv)
    chosen = [piece for piece in args.only.split(",") if piece]
    unknown = set(chosen) - set(PIECES)
    if unknown:
        parser.error(f"unknown piece(s) {', '.join(sorted(unknown))}; choose from {', '.join(PIECES)}")

    described = machine()
    start, busy = time.perf_counter(), cpu_seconds_busy()
    rows: list[Row] = []
    for piece in chosen:
        print(f"== {piece}", file=sys.stderr, flush=True)
        if piece == "workflow":
            rows += workflow.rows(repeats=args.repeats)
        elif piece == "numpy_speed":
            rows += numpy_speed.rows()
        elif piece == "checkpoints":
            rows += checkpoint_cost.rows(repeats=args.repeats)
        elif piece == "cuda":
            rows += cuda.rows(repeats=args.repeats)
        elif piece == "new_store":
            rows += new_store.rows(repeats=args.repeats)
        else:
            rows += sweep.rows(repeats=args.repeats)
    print(f"machine: {described}; torch device: {workflow.torch_cuda()}")
    print(format_table(rows))
    seconds = time.perf_counter() - start
    print(f"({seconds:.0f} s in all; {args.repeats} repeat(s); medians where repeated)")
    # An idle machine is checked, not assumed: the CPU time others took while the bench ran.
    print(f"(during the bench {others_load(busy, cpu_seconds_busy(), seconds)})")


if __name__ == "__main__":
    main()
