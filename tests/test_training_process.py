"""A single run trains in a forked child process (src/training_process.py): the same numbers as training
in one process, no training left behind when the run is stopped, and the child's failures reach the
run. (kill -9: tests/test_faults.py checks that the training process dies with the run's.)"""

from __future__ import annotations

import signal
import time

import psutil
import pytest
from mlflow import MlflowClient

from tests.conftest import run_cli
from tests.test_faults import all_runs, epochs_logged, longer_epochs, start_cli, wait_for

pytestmark = pytest.mark.slow

SMALL = ["dataset=sum", "dataset.num_samples=300", "model.hidden_size=8", "trainer.patience=0"]


def finished_run(tmp_path, name: str, *args: str):
    uri = f"sqlite:///{tmp_path / f'{name}.db'}"
    result = run_cli(*SMALL, *args, f"tracking.uri={uri}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(uri)
    return MlflowClient(uri), run, result


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_training_in_a_child_process_gives_the_numbers_of_training_in_one(tmp_path, framework) -> None:
    config = [f"framework={framework}", "trainer.epochs=6"]
    forked_client, forked, output = finished_run(tmp_path, "forked", *config)
    inline_client, inline, _ = finished_run(tmp_path, "inline", *config, "trainer.subprocess=false")
    assert "in process" in output.stdout + output.stderr  # the log names the training process
    timing = ("train_seconds", "epoch_seconds")
    assert {k: v for k, v in forked.data.metrics.items() if k not in timing} == {
        k: v for k, v in inline.data.metrics.items() if k not in timing
    }
    assert len(forked.data.metrics) > 10
    for name in ("train_loss", "val_loss"):
        forked_history = [(p.step, p.value) for p in forked_client.get_metric_history(forked.info.run_id, name)]
        inline_history = [(p.step, p.value) for p in inline_client.get_metric_history(inline.info.run_id, name)]
        assert sorted(forked_history) == sorted(inline_history) and len(forked_history) == 6
    # The logged model predicts as the run's own evaluation did.
    import mlflow.pyfunc

    assert forked.data.tags["model_uri"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'forked.db'}")
    assert mlflow.pyfunc.load_model(forked.data.tags["model_uri"]) is not None


def training_run(tmp_path, *config: str) -> tuple:
    """A run (by default one that trains until stopped), once 3 of its epochs are logged: (its process,
    its training process, the store's URI)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    process = start_cli(*(config or ("framework=numpy", *SMALL, "trainer.epochs=100000")), f"tracking.uri={uri}")
    try:
        wait_for(lambda: epochs_logged(uri, tmp_path / "mlflow.db") >= 3, what="3 epochs")
        (trainer,) = psutil.Process(process.pid).children()
    except BaseException:
        process.kill()
        raise
    return process, trainer, uri


def test_sigterm_ends_the_run_killed_and_stops_its_training_process(tmp_path) -> None:
    process, trainer, uri = training_run(tmp_path)
    try:
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        assert time.monotonic() - started < 30
        gone, alive = psutil.wait_procs([trainer], timeout=10)
        assert not alive
    finally:
        process.kill()
    (run,) = all_runs(uri)
    assert run.info.status == "KILLED"
    assert len(MlflowClient(uri).get_metric_history(run.info.run_id, "train_loss")) >= 3


def test_a_failure_in_the_training_process_ends_the_run_failed_with_its_reason(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "framework=numpy", *SMALL, "trainer.lr=1e12", "trainer.grad_clip=0", "trainer.optimizer=sgd",
        f"tracking.uri={uri}",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: loss became") and len(result.stderr.strip().splitlines()) == 1
    (run,) = all_runs(uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("TrainingDiverged: loss became")


def test_a_killed_training_process_ends_the_run_failed_in_one_line_and_the_run_resumes(tmp_path) -> None:
    config = ["framework=numpy", *longer_epochs(3000), "trainer.epochs=200", "trainer.patience=0"]
    process, trainer, uri = training_run(tmp_path, *config)
    try:
        trainer.kill()  # an OOM kill of the training process alone
        _, errors = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 2
    assert errors.strip().splitlines() == [
        f"error: the training process (pid {trainer.pid}) died (killed by signal 9); its last checkpoint is "
        "kept: resume with tracking.resume=true"
    ]
    (run,) = all_runs(uri)
    assert run.info.status == "FAILED" and "died (killed by signal 9)" in run.data.tags["error"]
    resumed = run_cli(*config, f"tracking.uri={uri}", "tracking.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming run {run.info.run_id} (FAILED) from its checkpoint" in resumed.stdout
    (run,) = all_runs(uri)
    assert run.info.status == "FINISHED"
