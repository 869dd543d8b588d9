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
    for framework in ("numpy", "torch", "keras"):  # keras: TensorFlow's loading lines used to come first
        result = run_cli(f"framework={framework}", "framework.device=cuda:7", "trainer=quick", f"tracking.uri={uri}")
        assert result.returncode == 2 and result.stderr.startswith("error: framework.device='cuda:7'"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "mlflow.db").exists()
