"""Failures mid-run: what was logged stays, the run ends with the right status, the next run works."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient

from src import experiment
from src.errors import TrainingDiverged
from src.frameworks import training


def test_loss_turning_nan_mid_training_fails_the_run_and_keeps_earlier_epochs(
    compose_cfg, tracking_uri, monkeypatch
) -> None:
    original = training.EpochMonitor.end_epoch

    def nan_at_epoch_three(self, train_loss, val_loss, seconds, snapshot):
        return original(self, math.nan if len(self.history) == 2 else train_loss, val_loss, seconds, snapshot)

    monkeypatch.setattr(training.EpochMonitor, "end_epoch", nan_at_epoch_three)
    cfg = compose_cfg(
        "framework=numpy", "dataset=sum", "dataset.num_samples=200", "trainer.epochs=5", "trainer.patience=0"
    )
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 3"):
        experiment.run(cfg)
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs(["1"])
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("TrainingDiverged: loss became nan at epoch 3")
    assert [point.step for point in client.get_metric_history(run.info.run_id, "val_loss")] == [1, 2]


def test_a_device_the_machine_lacks_fails_before_any_run(tmp_path) -> None:
    from tests.conftest import run_cli

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for framework in ("numpy", "torch"):
        result = run_cli(f"framework={framework}", "framework.device=cuda:7", "trainer=quick", f"tracking.uri={uri}")
        assert result.returncode == 2 and result.stderr.startswith("error: framework.device='cuda:7'")
    assert not (tmp_path / "mlflow.db").exists()


def test_sigterm_ends_the_run_killed_with_its_epochs(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from src.paths import PROJECT_ROOT

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "src.train",
            "framework=numpy",
            "dataset=sum",
            "trainer.epochs=100000",
            "trainer.patience=0",
            "tracking.log_model=false",
            f"tracking.uri={uri}",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    client = MlflowClient(uri)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = client.search_runs(["1"]) if (tmp_path / "mlflow.db").exists() else []
            if runs and len(client.get_metric_history(runs[0].info.run_id, "train_loss")) >= 2:
                break
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        process.kill()
    (run,) = client.search_runs(["1"])
    assert run.info.status == "KILLED"
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) >= 2
