"""A sweep of 8 jobs with the joblib launcher (2 workers) against the same 8 jobs one after the other.

Both are `python -m src.train -m framework=numpy trainer.seed=0,...,7` on a small sine task (a few
seconds a job), each a fresh process with its own copy of an already created SQLite store (creating
a store runs MLflow's schema migrations once; that is measured separately in the workflow rows).
The two modes alternate between repeats. To tell the launcher's cost from the machine's, the same
wall clock also measures the ceiling: two CPU-bound processes at once against one after the other
(on a machine shared with other jobs the ceiling is below 2 and no launcher can beat it).

Per job, the MLflow runs tell how long a job took inside the sweep (run start to end), and how long
the sweep took to reach its first job (start-up: imports, composition, and for joblib starting the
workers, which import everything again).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.measured import measure
from benchmarks.table import Row, at_least
from benchmarks.workflow import new_store

JOBS = 8
WORKERS = 2
JOB = [
    "framework=numpy",
    "dataset=sine",
    "dataset.num_samples=8000",
    "dataset.seq_len=50",
    "model=lstm",
    "trainer.epochs=4",
    "trainer.patience=0",
    "trainer.batch_size=64",
]
SPEED_UP_AIM = 1.6
BUSY_LOOP = "n = 0\nfor i in range(25_000_000): n += i"


@dataclass(frozen=True)
class SweepTimes:
    total: float
    to_first_job: float  # launch → the first child run's start
    job_seconds: float  # median child run duration (start → end)
    jobs_finished: int


def run_sweep(directory: Path, store: Path, parallel: bool) -> SweepTimes:
    from mlflow import MlflowClient

    directory.mkdir(parents=True)
    shutil.copy(store, directory / "mlflow.db")
    uri = f"sqlite:///{directory}/mlflow.db"
    launcher = ["hydra/launcher=joblib_local", f"hydra.launcher.n_jobs={WORKERS}"] if parallel else []
    measured = measure(
        [
            sys.executable,
            "-m",
            "src.train",
            "-m",
            *launcher,
            *JOB,
            f"trainer.seed={','.join(map(str, range(JOBS)))}",
            f"tracking.uri={uri}",
            f"hydra.sweep.dir={directory}/multirun",
        ],
        cwd=directory,
    )
    measured.check(f"sweep ({'joblib' if parallel else 'basic'} launcher)")
    client = MlflowClient(uri)
    runs = [
        run
        for run in client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
        if run.data.tags.get("sweep") != "parent"
    ]
    finished = [run for run in runs if run.info.status == "FINISHED"]
    return SweepTimes(
        measured.seconds,
        min(run.info.start_time for run in runs) / 1000 - measured.launched,
        statistics.median((run.info.end_time - run.info.start_time) / 1000 for run in finished),
        len(finished),
    )


def ceiling() -> float:
    """Two CPU-bound processes: seconds one after the other / seconds at the same time (2.0 on 2 idle cores)."""
    command = [sys.executable, "-c", BUSY_LOOP]
    start = time.perf_counter()
    for _ in range(2):
        subprocess.run(command, check=True)
    in_turn = time.perf_counter() - start
    start = time.perf_counter()
    processes = [subprocess.Popen(command) for _ in range(2)]
    for process in processes:
        process.wait()
    return in_turn / (time.perf_counter() - start)


def rows(repeats: int = 1) -> list[Row]:
    sequential: list[SweepTimes] = []
    parallel: list[SweepTimes] = []
    ceilings: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rnnlab-sweep-") as scratch:
        store = Path(scratch) / "template.db"
        new_store(store)
        for repeat in range(repeats):
            for mode in (False, True) if repeat % 2 == 0 else (True, False):
                print(
                    f"   sweep, {'joblib' if mode else 'basic'} launcher (repeat {repeat + 1}/{repeats}) ...",
                    file=sys.stderr,
                    flush=True,
                )
                times = run_sweep(Path(scratch) / f"{'joblib' if mode else 'basic'}-{repeat}", store, mode)
                (parallel if mode else sequential).append(times)
            ceilings.append(ceiling())

    def median(runs: list[SweepTimes], name: str) -> float:
        return statistics.median(getattr(run, name) for run in runs)

    label = f"numpy x{JOBS}"
    return [
        Row(f"sweep {JOBS} jobs: basic launcher (sequential)", label, median(sequential, "total"), "s"),
        Row(f"sweep {JOBS} jobs: joblib, n_jobs={WORKERS}", label, median(parallel, "total"), "s"),
        at_least(
            "sweep speed-up joblib / sequential",
            label,
            median(sequential, "total") / median(parallel, "total"),
            SPEED_UP_AIM,
            "x",
        ),
        Row("  sweep launch -> first job: sequential", label, median(sequential, "to_first_job"), "s"),
        Row("  sweep launch -> first job: joblib", label, median(parallel, "to_first_job"), "s"),
        Row("  one job (MLflow run start -> end): sequential", label, median(sequential, "job_seconds"), "s"),
        Row("  one job (MLflow run start -> end): joblib", label, median(parallel, "job_seconds"), "s"),
        Row(
            "  jobs finished: sequential / joblib",
            label,
            f"{min(run.jobs_finished for run in sequential)} / {min(run.jobs_finished for run in parallel)}",
        ),
        Row("  machine ceiling: 2 busy processes, in turn / at once", "python", statistics.median(ceilings), "x"),
    ]
