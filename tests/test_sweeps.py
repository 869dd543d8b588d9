"""Multiruns as users launch them: grouped under a parent MLflow run, with every launcher we ship."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

TINY = ["dataset=sum", "dataset.num_samples=200", "trainer=quick", "model.hidden_size=8", "tracking.log_model=false"]


def sweep_of(uri: str) -> tuple:
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [run for run in runs if run.data.tags.get("sweep") == "parent"]
    assert len(parents) == 1
    children = [run for run in runs if run.data.tags.get("sweep") != "parent"]
    return client, parents[0], children


def check_grouped(parent, children) -> None:
    assert parent.info.status == "FINISHED"
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["sweep_id"] == parent.data.tags["sweep_id"]


def test_framework_by_cell_sweep_is_nine_children_of_one_parent(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("-m", "framework=numpy,torch,keras", "model=rnn,lstm,gru", f"tracking.uri={uri}", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    client, parent, children = sweep_of(uri)
    check_grouped(parent, children)
    assert sorted((c.data.tags["framework"], c.data.tags["cell"]) for c in children) == sorted(
        (fw, cell) for fw in ("numpy", "torch", "keras") for cell in ("rnn", "lstm", "gru")
    )
    assert all(child.info.status == "FINISHED" for child in children)
    best = min(children, key=lambda child: child.data.metrics["best_val_loss"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_val_loss"] == pytest.approx(best.data.metrics["best_val_loss"])
    assert parent.data.metrics["failed_jobs"] == 0 and parent.data.metrics["jobs"] == 9
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert {"leaderboard.csv", "leaderboard.txt", "comparison.png"} <= artifacts


def test_failing_jobs_end_failed_and_the_sweep_goes_on(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "-m",
        "trainer.lr=0.01,10000000.0",
        "trainer.batch_size=16,100000",
        "framework=numpy",
        "model=rnn",
        "model.activation=relu",
        "trainer.optimizer=sgd",
        "trainer.grad_clip=0",
        f"tracking.uri={uri}",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, parent, children = sweep_of(uri)
    check_grouped(parent, children)
    statuses = sorted(
        (c.data.tags["overrides"].split()[0], c.data.tags["overrides"].split()[1], c.info.status) for c in children
    )
    assert statuses == [
        ("trainer.lr=0.01", "trainer.batch_size=100000", "FAILED"),
        ("trainer.lr=0.01", "trainer.batch_size=16", "FINISHED"),
        ("trainer.lr=10000000.0", "trainer.batch_size=100000", "FAILED"),
        ("trainer.lr=10000000.0", "trainer.batch_size=16", "FAILED"),
    ]
    assert parent.data.metrics["failed_jobs"] == 3
    assert any("TrainingDiverged" in c.data.tags.get("error", "") for c in children)
    assert any("trainer.batch_size" in c.data.tags.get("error", "") for c in children)


def test_six_parallel_joblib_jobs_on_sqlite_lose_nothing(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "-m",
        "hydra/launcher=joblib_local",
        "hydra.launcher.n_jobs=6",
        "framework=numpy",
        "trainer.seed=0,1,2,3,4,5",
        "trainer.epochs=6",
        f"tracking.uri={uri}",
        *[arg for arg in TINY if arg != "trainer=quick"],
        "trainer.patience=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, parent, children = sweep_of(uri)
    check_grouped(parent, children)
    assert sorted(child.data.params["trainer.seed"] for child in children) == [str(seed) for seed in range(6)]
    for child in children:
        assert child.info.status == "FINISHED"
        for metric in ("train_loss", "val_loss", "epoch_seconds"):
            assert [point.step for point in client.get_metric_history(child.info.run_id, metric)] == list(range(1, 7))
    assert len({child.data.metrics["best_val_loss"] for child in children}) == 6


def joblib_sweep(tmp_path: Path, seeds: str, *extra: str) -> tuple:
    """A finished 2-worker joblib sweep of tiny numpy jobs: (parent, children, its output)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "-m", "hydra/launcher=joblib_local", "hydra.launcher.n_jobs=2", *extra, "framework=numpy",
        f"trainer.seed={seeds}", f"tracking.uri={uri}", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    _, parent, children = sweep_of(uri)
    check_grouped(parent, children)
    assert sorted(child.data.params["trainer.seed"] for child in children) == seeds.split(",")
    assert all(child.info.status == "FINISHED" for child in children)
    return parent, children, result.stdout + result.stderr


def test_joblib_workers_are_forked_after_the_parent_run_and_each_runs_several_jobs(tmp_path: Path) -> None:
    """hydra_plugins/rnnlab/joblib_launcher.py: 4 jobs in 2 workers forked from the sweep's process once
    its parent run exists (so they inherit its imports, and open their own store connections)."""
    parent, children, output = joblib_sweep(tmp_path, "0,1,2,3")
    workers = {child.data.tags["heartbeat.pid"] for child in children}
    assert len(workers) == 2 and parent.data.tags["heartbeat.pid"] not in workers
    for child in children:
        assert float(child.data.tags["heartbeat.process_start"]) >= parent.info.start_time / 1000 - 0.01
    assert "4 jobs in 2 forked workers" in output


# src.train, with every composition of one job's config (Hydra's RUN mode) written to argv[1].
COUNTED_COMPOSITIONS = """
import runpy, sys
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.types import RunMode

original = ConfigLoaderImpl.load_configuration
written_to = sys.argv[1]

def counted(self, *args, **kwargs):
    if kwargs.get("run_mode") == RunMode.RUN:
        with open(written_to, "a") as log:
            log.write(" ".join(o for o in kwargs["overrides"] if o.startswith("trainer.seed")) + "\\n")
    return original(self, *args, **kwargs)

ConfigLoaderImpl.load_configuration = counted
sys.argv = ["src.train", *sys.argv[2:]]
runpy.run_module("src.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("launcher", ["basic", "joblib_local"])
def test_each_job_of_a_sweep_is_composed_once_and_runs_its_own_config(tmp_path: Path, launcher: str) -> None:
    """Hydra's sweeper composes every job to check it, then its launcher composed it again (0.15 s a
    job, before the first could start): now the launcher gets a copy of the checked composition."""
    import subprocess
    import sys

    import yaml

    from src.paths import PROJECT_ROOT

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    compositions = tmp_path / "compositions.txt"
    launch = [] if launcher == "basic" else ["hydra/launcher=joblib_local", "hydra.launcher.n_jobs=2"]
    result = subprocess.run(
        [sys.executable, "-c", COUNTED_COMPOSITIONS, str(compositions), "-m", *launch, "trainer.seed=0,1,2"]
        + [f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'multirun'}", "framework=numpy", *TINY],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(compositions.read_text().splitlines()) == [f"trainer.seed={seed}" for seed in range(3)]
    for job in range(3):
        folder = tmp_path / "multirun" / str(job) / ".hydra"
        hydra = yaml.safe_load((folder / "hydra.yaml").read_text())["hydra"]
        assert hydra["job"]["num"] == job and f"trainer.seed={job}" in hydra["overrides"]["task"]
        assert yaml.safe_load((folder / "config.yaml").read_text())["trainer"]["seed"] == job
    _, parent, children = sweep_of(uri)
    check_grouped(parent, children)
    assert sorted(child.data.params["trainer.seed"] for child in children) == ["0", "1", "2"]
    assert all(child.info.status == "FINISHED" for child in children)


def test_joblib_launcher_can_still_use_lokys_fresh_workers(tmp_path: Path) -> None:
    _, _, output = joblib_sweep(tmp_path, "0,1", "hydra.launcher.backend=loky")
    assert "loky workers" in output and "forked workers" not in output


def test_a_forked_process_never_uses_a_pooled_connection_its_parent_opened(tmp_path: Path) -> None:
    """src.tracking.fork_safe_connections: after a fork the child opens its own SQLite connection (one
    carried across fork is forbidden by SQLite), and the parent's stays usable."""
    import multiprocessing

    from sqlalchemy import create_engine, event, text

    from src.tracking import fork_safe_connections

    engine = create_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    opened: list = []  # every DB-API connection the engine opened, kept alive (so no id is reused)
    event.listen(engine, "connect", lambda dbapi_connection, record: opened.append(dbapi_connection))
    with engine.connect() as connection:  # opened before the listener exists, as the sweep's store is
        connection.execute(text("create table jobs (pid integer)"))
        connection.commit()
    fork_safe_connections()

    def child(results) -> None:
        import os

        with engine.connect() as connection:
            connection.execute(text("insert into jobs values (:pid)"), {"pid": os.getpid()})
            connection.commit()
            results.put((connection.connection.dbapi_connection is opened[0], len(opened)))

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    process = context.Process(target=child, args=(results,))
    process.start()
    inherited_used, opened_in_child = results.get(timeout=30)
    process.join(timeout=30)
    assert process.exitcode == 0
    assert not inherited_used and opened_in_child == 2
    with engine.connect() as connection:  # the parent's own connection, still working
        assert connection.connection.dbapi_connection is opened[0] and len(opened) == 1
        assert connection.execute(text("select pid from jobs")).scalar_one() == process.pid


def test_optuna_search_minimises_and_survives_failed_trials(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.params={trainer.lr: 'choice(0.01, 1e7)', model.hidden_size: 'choice(4, 8)'}",
        "framework=numpy",
        "model.activation=relu",
        "trainer.optimizer=sgd",
        "trainer.grad_clip=0",
        f"tracking.uri={uri}",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Best value" in result.stdout + result.stderr
    _, parent, children = sweep_of(uri)
    check_grouped(parent, children)
    assert len(children) == 5
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert finished and parent.data.metrics["failed_jobs"] == 5 - len(finished)
    assert parent.data.metrics["best_val_loss"] == pytest.approx(min(c.data.metrics["best_val_loss"] for c in finished))


def parent_status(database: Path) -> str | None:
    """The sweep's parent run's status, read straight from the SQLite store (None before it exists)."""
    import sqlite3

    if not database.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=5)) as connection:
            row = connection.execute(
                "SELECT status FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
                "WHERE tags.key = 'sweep' AND tags.value = 'parent'"
            ).fetchone()
    except sqlite3.Error:  # the store is being created
        return None
    return row[0] if row else None


@pytest.mark.serial
def test_ray_launcher_runs_jobs_as_children(tmp_path: Path) -> None:
    """And SIGTERM every millisecond from the moment Ray's processes stop until the sweep has exited: a
    finished Ray sweep exits without a traceback and leaves none of Ray's processes (Ray's shutdown put
    SIGTERM's default action back: the sweep died with -15 and left Ray's agents running)."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from src.paths import PROJECT_ROOT

    database = tmp_path / "mlflow.db"
    uri = f"sqlite:///{database}"
    process = subprocess.Popen(
        [sys.executable, "-m", "src.train", "-m", "hydra/launcher=ray_local", "framework=numpy,torch"]
        + [f"tracking.uri={uri}", *TINY],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while parent_status(database) != "FINISHED" and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        tree: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):  # a sweep that has already exited: nothing to sample
            tree = psutil.Process(process.pid).children(recursive=True)
        # From the moment Ray starts stopping its processes: its shutdown, where it had put SIGTERM's
        # default action back, runs in the sweep's exit (a signal before it stops the sweep as usual).
        while all(child.is_running() for child in tree) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        while process.poll() is None and time.monotonic() < deadline:  # (none if it had already exited)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.001)
        _, errors = process.communicate(timeout=60)
    finally:
        process.kill()
    # A signal may still land before the sweep's record was whole: it then stops the sweep as any other.
    assert process.returncode in (0, 128 + signal.SIGTERM), (process.returncode, errors[-3000:])
    assert "Traceback" not in errors, errors[-3000:]
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert not alive, [(child.pid, child.name()) for child in alive]
    _, parent, children = sweep_of(uri)
    check_grouped(parent, children)
    assert sorted(child.data.tags["framework"] for child in children) == ["numpy", "torch"]
    assert all(child.info.status == "FINISHED" for child in children), [
        (child.info.status, child.data.tags.get("error")) for child in children
    ]


def test_compare_prints_a_leaderboard_and_writes_the_plot(tmp_path: Path) -> None:
    import subprocess
    import sys

    from src.paths import PROJECT_ROOT

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_cli("-m", "framework=numpy", "model=rnn,gru", f"tracking.uri={uri}", *TINY).returncode == 0
    _, parent, children = sweep_of(uri)
    output = tmp_path / "comparison.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.compare",
            parent.data.tags["sweep_id"],
            "--tracking-uri",
            uri,
            "--output",
            str(output),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "best_val_loss" in lines[0] and "baseline_linear_test_mse" in lines[0]
    best = min(children, key=lambda child: child.data.metrics["best_val_loss"])
    assert lines[1].split()[0] == best.info.run_id[:8]  # best first
    assert output.stat().st_size > 10_000 and output.read_bytes()[:4] == b"\x89PNG"
    by_name = subprocess.run(
        [sys.executable, "-m", "src.compare", "rnnlab", "--tracking-uri", uri, "--output", str(tmp_path / "b.png")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert by_name.returncode == 0 and len(by_name.stdout.splitlines()) == 1 + 1 + 2  # header, 2 runs, plot line
    missing = subprocess.run(
        [sys.executable, "-m", "src.compare", "nope", "--tracking-uri", uri],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: no experiment or sweep named 'nope'")


def test_a_sweep_whose_jobs_all_fail_exits_2_with_its_parent_failed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("-m", "trainer.batch_size=100000,200000", f"tracking.uri={uri}", *TINY)
    assert result.returncode == 2
    assert "Warning" not in result.stderr, result.stderr  # the summary's figure has no curve to label
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: all 2 jobs of the sweep failed (their runs' `error` tags say why)"
    )
    client, parent, children = sweep_of(uri)
    assert parent.info.status == "FAILED" and [child.info.status for child in children] == ["FAILED", "FAILED"]
    assert all(child.info.run_name.startswith("failed-job-") for child in children)


@pytest.mark.parametrize("swept", ["tracking.uri", "tracking.experiment", "tracking"])
def test_a_sweep_over_the_store_or_experiment_is_refused_before_anything_is_written(tmp_path: Path, swept) -> None:
    values = {
        "tracking.uri": f"sqlite:///{tmp_path / 'a.db'},sqlite:///{tmp_path / 'b.db'}",
        "tracking.experiment": "one,two",
        "tracking": "default,server",
    }[swept]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "-m",
        f"{swept}={values}",
        f"tracking.uri={uri}" if swept != "tracking.uri" else "trainer.seed=0",
        f"hydra.sweep.dir={tmp_path / 'out'}",
        *TINY,
        env={"MLFLOW_TRACKING_URI": uri},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == (
        f"error: {swept} cannot take several values in one sweep: every job is a child run of the sweep's one "
        "parent run, in one store and experiment; start one sweep per value"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_a_job_whose_store_or_experiment_is_not_its_sweeps_fails_beside_the_parent(tmp_path: Path) -> None:
    """What no override shows: an experiment named after a swept key. Every job but the one that matches the
    parent's experiment fails by name, recorded as a FAILED child in the parent's store and experiment."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "-m", "trainer.seed=0,1,2", "tracking.experiment=seed${trainer.seed}", f"tracking.uri={uri}", *TINY
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, parent, children = sweep_of(uri)
    check_grouped(parent, children)
    assert sorted(experiment.name for experiment in client.search_experiments()) == ["Default", "seed0"]
    assert sorted(child.info.status for child in children) == ["FAILED", "FAILED", "FINISHED"]
    errors = sorted(child.data.tags["error"] for child in children if child.info.status == "FAILED")
    assert errors == [
        f"UserError: tracking.experiment='seed{seed}' differs from its sweep's ('seed0'): every job of a sweep is "
        "a child run of one parent run, in one store and experiment; start one sweep per tracking.experiment"
        for seed in (1, 2)
    ]
    assert parent.data.metrics["failed_jobs"] == 2


def test_a_growing_objective_is_maximised_by_the_sweep_and_by_optuna(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from src.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        search = compose(
            config_name="config",
            overrides=["hparams_search=optuna", "dataset=parity", "objective=test_accuracy"],
            return_hydra_config=True,
        )
        assert search.hydra.sweeper.direction == "maximize"
        default = compose(config_name="config", overrides=["hparams_search=optuna"], return_hydra_config=True)
        assert default.hydra.sweeper.direction == "minimize"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "-m",
        "trainer.lr=0.0001,0.02",
        "dataset=parity",
        "dataset.num_samples=200",
        "dataset.seq_len=3",
        "objective=test_accuracy",
        "trainer.epochs=20",
        "trainer.patience=0",
        "model.hidden_size=8",
        "tracking.log_model=false",
        "framework=numpy",
        f"tracking.uri={uri}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, parent, children = sweep_of(uri)
    accuracies = {child.info.run_id: child.data.metrics["test_accuracy"] for child in children}
    assert len(set(accuracies.values())) == 2  # the two learning rates do not tie
    assert parent.data.tags["best_run_id"] == max(accuracies, key=accuracies.get)
