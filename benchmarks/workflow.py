"""Workflow overhead, start-up, peak memory and the torch device, per framework.

For each framework, fresh processes train the same LSTM (hidden 32, batch 64, Adam lr 0.005,
clipping at norm 1, 5 epochs each with a validation pass) on the same standardised sine data
(20,000 sequences of 50 steps, seed 0):
  workflow  `python -m src.train ...` with a fresh SQLite MLflow store and the default model logging
            (by default the network trains in a forked child process: src/training_process.py);
  inline    the same with trainer.subprocess=false: training in the run's own process;
  bare      benchmarks/bare/<framework>_script.py: the framework alone in a plain script, no tracking.
A fourth process runs the bare script again with every thread pool at one thread (OMP, OpenBLAS, MKL,
TensorFlow): on a 2-core machine shared with other jobs, a second BLAS/OpenMP thread that spins
waiting for a busy core can make training several times slower. Every workflow run gets a copy of a
store created beforehand (creating one runs MLflow's schema migrations, reported once on its own row),
so it times a run as every run but a project's first one sees it.
Each is launched by benchmarks.measured (wall time; peak RSS of the largest process from
getrusage(RUSAGE_CHILDREN) in a fresh intermediate process, and of all the command's processes
together, sampled). Within a repeat the order alternates between frameworks and repeats, so a burst
of load from other jobs on the machine does not always hit the same side.

Where the workflow's time goes, all on the same wall clock (time.time(), milliseconds):
  start-up      launch → start of the first epoch. The first epoch's start is the timestamp MLflow
                stored with the first `train_loss` (the time the epoch ended, in whichever process
                trained) minus that epoch's `epoch_seconds`. Also shown: launch → the MLflow run's
                start_time (imports, composition, data, opening the store), which with a training
                process can come after training started.
  training      first epoch's start → the last `train_loss` timestamp.
  evaluation    last epoch → the run's end_time, less the model logging: final metrics, loss curve,
                test predictions, baselines, predictions.csv, results.txt, figures, the flush of the
                asynchronous epoch metrics.
  model logging the logged model's creation_timestamp → its last_updated_timestamp (READY): pyfunc
                save, signature, input example, requirements, artifact copy. It comes first after
                training, while a training process still predicts the test and validation splits.
  exit          the run's end_time → process exit (the results table, interpreter shutdown).
The bare scripts print their own timestamps: start-up is launch → the first epoch's start, training is
up to the last epoch's end, the rest is after training (the test split's MSE, as the issue's plain
script prints it, and the interpreter's exit). Both sides' test MSE are printed: they are the same
job when these agree (the workflow keeps the best epoch's weights, the bare script the last's).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from benchmarks.measured import measure
from benchmarks.table import Row, at_most

FRAMEWORKS = ("numpy", "torch", "keras")
OVERRIDES = [
    "dataset=sine",
    "dataset.num_samples=20000",
    "dataset.seq_len=50",
    "model=lstm",
    "model.hidden_size=32",
    "trainer.epochs=5",
    "trainer.patience=0",
    "trainer.batch_size=64",
]
# Issue 16's aims: workflow / bare at most this (both on one thread), per framework.
AIMS = {"numpy": 1.15, "torch": 1.15, "keras": 1.10}
# The bare script once more with every thread pool at one thread (BLAS, OpenMP/torch, TensorFlow).
ONE_THREAD = {
    name: "1"
    for name in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
    )
}


@dataclass(frozen=True)
class WorkflowTimes:
    total: float
    startup: float
    to_run_start: float  # part of start-up: imports, composition, data, checks
    run_setup: float  # part of start-up: params, config, datasets, git, network
    training: float
    evaluation: float
    model_logging: float
    exit: float
    max_rss_mib: float
    tree_rss_mib: float
    test_mse: float  # in the data's units: the same job as the bare script's
    device: str


@dataclass(frozen=True)
class BareTimes:
    total: float
    startup: float
    training: float
    after: float  # the test split's prediction and MSE, interpreter shutdown
    max_rss_mib: float
    test_mse: float
    device: str


def new_store(path: Path) -> float:
    """Create an empty SQLite store (MLflow's schema migrations) in a fresh process; returns its seconds
    without the process's start-up and imports. Measurements copy it, so that they time a run against
    an existing store, as every run but a project's first is."""
    script = (
        "import time; from mlflow import MlflowClient; start = time.perf_counter(); "
        f"MlflowClient('sqlite:///{path}').search_experiments(); print(time.perf_counter() - start)"
    )
    return float(
        subprocess.run(
            [sys.executable, "-c", script], cwd=path.parent, check=True, capture_output=True, text=True
        ).stdout.split()[-1]
    )  # cwd: the default experiment's ./mlruns


def run_workflow(framework: str, directory: Path, store: Path, overrides: tuple[str, ...] = ()) -> WorkflowTimes:
    from mlflow import MlflowClient

    directory.mkdir(parents=True)
    shutil.copy(store, directory / "mlflow.db")
    uri = f"sqlite:///{directory}/mlflow.db"
    measured = measure(
        [
            sys.executable,
            "-m",
            "src.train",
            *OVERRIDES,
            f"framework={framework}",
            f"tracking.uri={uri}",
            f"hydra.run.dir={directory}/hydra",
            *overrides,
        ],
        cwd=directory,
    )
    measured.check(f"workflow {framework}")
    client = MlflowClient(uri)
    [run] = client.search_runs(experiment_ids=[client.get_experiment_by_name("rnnlab").experiment_id])
    losses = sorted(client.get_metric_history(run.info.run_id, "train_loss"), key=lambda metric: metric.step)
    first_seconds = min(client.get_metric_history(run.info.run_id, "epoch_seconds"), key=lambda metric: metric.step)
    first_epoch = losses[0].timestamp / 1000 - first_seconds.value
    last_epoch = losses[-1].timestamp / 1000
    model_id = run.data.tags["model_uri"].rsplit("/", 1)[-1]
    model = client.get_logged_model(model_id)
    model_seconds = (model.last_updated_timestamp - model.creation_timestamp) / 1000
    run_start, run_end = run.info.start_time / 1000, run.info.end_time / 1000
    return WorkflowTimes(
        measured.seconds,
        first_epoch - measured.launched,
        run_start - measured.launched,
        first_epoch - run_start,
        last_epoch - first_epoch,
        run_end - last_epoch - model_seconds,
        model_seconds,
        measured.launched + measured.seconds - run_end,
        measured.max_rss_mib,
        measured.tree_rss_mib,
        run.data.metrics["test_mse"],
        run.data.tags.get("device", "?"),
    )


def run_bare(framework: str, directory: Path, env: dict[str, str] | None = None) -> BareTimes:
    measured = measure([sys.executable, "-m", f"benchmarks.bare.{framework}_script"], cwd=directory, env=env)
    measured.check(f"bare {framework}")
    stamps = json.loads(measured.stdout.strip().splitlines()[-1])
    end = measured.launched + measured.seconds
    return BareTimes(
        measured.seconds,
        stamps["train_start"] - measured.launched,
        stamps["train_end"] - stamps["train_start"],
        end - stamps["train_end"],
        measured.max_rss_mib,
        stamps["test_mse"],
        stamps.get("device", "cpu"),
    )


def check_bare_data() -> None:
    """The bare scripts' arrays are exactly those the workflow trains and validates on."""
    from benchmarks.bare.common import sine_splits
    from src.data import sine
    from src.data.scaling import Standardizer

    splits = sine.generate(sine.Params(num_samples=20000, seq_len=50), seed=0)
    scaler = Standardizer.fit(splits.train)
    train, val, test = (scaler.transform(split) for split in (splits.train, splits.val, splits.test))
    expected = (train.x, train.y, val.x, val.y, test.x, test.y)
    names = ("train x", "train y", "val x", "val y", "test x", "test y")
    for name, mine, theirs in zip(names, sine_splits(), expected):
        if mine.shape != theirs.shape or mine.dtype != theirs.dtype or not np.array_equal(mine, theirs):
            raise AssertionError(f"bare data differs from the workflow's: {name}")


Results = tuple[list[WorkflowTimes], list[BareTimes], list[BareTimes], list[WorkflowTimes]]
INLINE = ("trainer.subprocess=false",)


def measurements(frameworks: tuple[str, ...] = FRAMEWORKS, repeats: int = 1) -> tuple[dict[str, Results], float]:
    """Per framework the workflow's, the bare script's, the one-thread bare script's and the workflow's
    times with training in the run's own process, and the seconds to create a new store."""
    results: dict[str, Results] = {name: ([], [], [], []) for name in frameworks}
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-") as scratch:
        store = Path(scratch) / "template.db"
        store_seconds = new_store(store)
        for repeat in range(repeats):
            for index, framework in enumerate(frameworks):
                workflow_first = (index + repeat) % 2 == 1
                for side in (
                    ("workflow", "bare", "bare-1-thread", "workflow-inline")
                    if workflow_first
                    else ("bare", "workflow", "workflow-inline", "bare-1-thread")
                ):
                    directory = Path(scratch) / f"{framework}-{side}-{repeat}"
                    print(f"   {side} {framework} (repeat {repeat + 1}/{repeats}) ...", file=sys.stderr, flush=True)
                    if side == "workflow":
                        results[framework][0].append(run_workflow(framework, directory, store))
                    elif side == "workflow-inline":
                        results[framework][3].append(run_workflow(framework, directory, store, INLINE))
                    elif side == "bare":
                        results[framework][1].append(run_bare(framework, directory))
                    else:
                        results[framework][2].append(run_bare(framework, directory, ONE_THREAD))
    return results, store_seconds


def _median(runs: list, name: str) -> float:
    return statistics.median(getattr(run, name) for run in runs)


def rows(frameworks: tuple[str, ...] = FRAMEWORKS, repeats: int = 1) -> list[Row]:
    check_bare_data()
    results, store_seconds = measurements(frameworks, repeats)
    medians = {
        framework: (
            {field.name: _median(workflow, field.name) for field in fields(WorkflowTimes) if field.name != "device"},
            {field.name: _median(bare, field.name) for field in fields(BareTimes) if field.name != "device"},
            {field.name: _median(single, field.name) for field in fields(BareTimes) if field.name != "device"},
            {field.name: _median(inline, field.name) for field in fields(WorkflowTimes) if field.name != "device"},
        )
        for framework, (workflow, bare, single, inline) in results.items()
    }
    table: list[Row] = []

    def each(measure: str, value, unit: str = "s") -> None:
        table.extend(Row(measure, framework, value(*medians[framework][:2]), unit) for framework in frameworks)

    each("workflow wall time (src.train)", lambda w, b: w["total"])
    each("bare script wall time", lambda w, b: b["total"])
    # The workflow trains on one thread (framework.threads=1): compare it with the bare script on one
    # thread too, and show the ratio against the bare script's default threads beside it.
    table.extend(
        at_most(
            "workflow / bare wall time (both 1 thread)", framework, w["total"] / single["total"], AIMS[framework], "x"
        )
        for framework, (w, _, single, _) in medians.items()
    )
    table.extend(
        Row("workflow / bare wall time (bare: default threads)", framework, w["total"] / b["total"], "x")
        for framework, (w, b, _, _) in medians.items()
    )
    table.extend(
        Row("workflow, training in its own process (subprocess=false)", framework, inline["total"], "s")
        for framework, (_, _, _, inline) in medians.items()
    )
    table.extend(
        Row("  that / bare wall time (both 1 thread)", framework, inline["total"] / single["total"], "x")
        for framework, (_, _, single, inline) in medians.items()
    )
    each("start-up to 1st epoch: workflow", lambda w, b: w["startup"])
    each("  launch -> MLflow run created (imports, compose, data, store)", lambda w, b: w["to_run_start"])
    each("  MLflow run -> 1st epoch (< 0: training started first)", lambda w, b: w["run_setup"])
    each("start-up to 1st epoch: bare", lambda w, b: b["startup"])
    each("training, 5 epochs: workflow", lambda w, b: w["training"])
    each("training, 5 epochs: bare", lambda w, b: b["training"])
    table.extend(
        Row("training, 5 epochs: bare, 1 thread per pool", framework, single["training"], "s")
        for framework, (_, _, single, _) in medians.items()
    )
    table.extend(
        Row("bare training: default threads / 1 thread", framework, b["training"] / single["training"], "x")
        for framework, (_, b, single, _) in medians.items()
    )
    each("after training: workflow evaluation+plots", lambda w, b: w["evaluation"])
    each("after training: workflow model logging", lambda w, b: w["model_logging"])
    each("after training: workflow run end -> exit", lambda w, b: w["exit"])
    each("after training: bare", lambda w, b: b["after"])
    each("extra s: start-up (workflow - bare)", lambda w, b: w["startup"] - b["startup"])
    each("extra s: training (workflow - bare)", lambda w, b: w["training"] - b["training"])
    each(
        "extra s: after training (workflow - bare)",
        lambda w, b: w["evaluation"] + w["model_logging"] + w["exit"] - b["after"],
    )
    each("test MSE, same model and data: workflow", lambda w, b: w["test_mse"], "")
    each("test MSE, same model and data: bare", lambda w, b: b["test_mse"], "")
    each("peak RSS: workflow, largest process", lambda w, b: w["max_rss_mib"], "MiB")
    each("peak RSS: workflow, all its processes (sampled)", lambda w, b: w["tree_rss_mib"], "MiB")
    table.extend(
        Row("peak RSS: workflow in its own process", framework, inline["max_rss_mib"], "MiB")
        for framework, (_, _, _, inline) in medians.items()
    )
    each("peak RSS: bare", lambda w, b: b["max_rss_mib"], "MiB")
    table.extend(
        at_most("peak RSS: workflow largest process / bare", framework, w["max_rss_mib"] / b["max_rss_mib"], 1.3, "x")
        for framework, (w, b, _, _) in medians.items()
    )
    for framework, (workflow, bare, _, _) in results.items():
        devices = sorted({run.device for run in workflow})
        table.append(
            Row(
                "device (run's `device` tag / bare)",
                framework,
                f"{','.join(devices)} / {','.join(sorted({run.device for run in bare}))}",
            )
        )
    if "numpy" in medians and "torch" in medians:
        numpy_bare, torch_bare = medians["numpy"][1]["training"], medians["torch"][1]["training"]
        table.append(Row("numpy / torch training time (bare, this task)", "numpy/torch", numpy_bare / torch_bare, "x"))
    table.append(Row("one-off: creating a new SQLite store (not in the above)", "mlflow", store_seconds, "s"))
    return table


def torch_cuda() -> str:
    """Whether torch sees CUDA here: with CUDA, framework.device=auto (the default) trains on it."""
    import torch

    return f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu (no CUDA device)"
