"""Short real trainings that land in a temporary MLflow store, checked through MLflow's own API."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from src import experiment
from src.data import DATASETS
from src.errors import TrainingDiverged, UserError
from tests.conftest import QUICK

FRAMEWORKS = ["numpy", "torch", "keras"]
CELLS = ["rnn", "lstm", "gru"]


def regenerate(cfg):
    from src.settings import settings_from

    settings = settings_from(cfg)
    return DATASETS[settings.dataset.name].generate(settings.dataset, settings.trainer.seed)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("cell", CELLS)
def test_training_lands_in_mlflow_with_a_loadable_model(compose_cfg, tracking_uri, framework, cell) -> None:
    cfg = compose_cfg(f"framework={framework}", f"model={cell}", "dataset=sine", "dataset.num_samples=300", *QUICK)
    outcome = experiment.run(cfg, [f"model={cell}"])

    client = MlflowClient(tracking_uri)
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["framework"] == framework and run.data.tags["cell"] == cell
    assert run.data.tags["dataset"] == "sine" and run.data.tags["overrides"] == f"model={cell}"
    assert run.data.params["model.cell"] == cell and run.data.params["trainer.epochs"] == "3"
    assert run.data.params["model.hidden_size"] == "8" and run.data.params["data.num_train"] == "210"

    history = client.get_metric_history(outcome.run_id, "val_loss")
    assert [point.step for point in history] == [1, 2, 3]
    assert min(point.value for point in history) == pytest.approx(run.data.metrics["best_val_loss"])
    assert len(client.get_metric_history(outcome.run_id, "train_loss")) == 3
    for name in [
        "test_mse",
        "test_rmse",
        "test_mae",
        "test_r2",
        "baseline_last_test_mse",
        "baseline_mean_test_mse",
        "baseline_linear_test_mse",
    ]:
        assert np.isfinite(run.data.metrics[name]), name
    assert run.data.metrics["test_rmse"] == pytest.approx(run.data.metrics["test_mse"] ** 0.5)

    artifacts = {item.path for item in client.list_artifacts(outcome.run_id)}
    artifacts |= {item.path for item in client.list_artifacts(outcome.run_id, "plots")}
    assert {
        "config.yaml",
        "predictions.csv",
        "results.txt",
        "plots/loss_curve.png",
        "plots/predictions_vs_truth.png",
    } <= artifacts

    inputs = run.inputs.dataset_inputs
    assert {entry.dataset.name for entry in inputs} == {"sine-train", "sine-val", "sine-test"}
    assert all(entry.dataset.digest for entry in inputs)

    splits = regenerate(cfg)
    local = mlflow.artifacts.download_artifacts(
        run_id=outcome.run_id, artifact_path="predictions.csv", tracking_uri=tracking_uri
    )
    reported = pd.read_csv(local)
    np.testing.assert_allclose(reported["y_true"], splits.test.y[:, 0], rtol=1e-6)
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    np.testing.assert_allclose(model.predict(splits.test.x)[:, 0], reported["y_pred_model"], rtol=1e-5, atol=1e-6)


def test_early_stopping_restores_the_best_epoch(compose_cfg, tracking_uri) -> None:
    cfg = compose_cfg(
        "dataset=sum",
        "dataset.num_samples=200",
        "tracking.log_model=false",
        "trainer.epochs=40",
        "trainer.patience=2",
        "trainer.lr=0.3",
        "model.hidden_size=8",
    )
    outcome = experiment.run(cfg)
    metrics = outcome.metrics
    assert metrics["epochs_trained"] < 40 and metrics["epochs_trained"] == metrics["best_epoch"] + 2
    # The restored weights are the best epoch's: the final validation MSE equals its val_loss.
    assert metrics["val_mse"] == pytest.approx(metrics["best_val_loss"], rel=1e-4)


def test_objective_is_the_best_epochs_validation_loss(compose_cfg, tracking_uri) -> None:
    outcome = experiment.run(compose_cfg("dataset=sum", "dataset.num_samples=200", "tracking.log_model=false", *QUICK))
    history = MlflowClient(tracking_uri).get_metric_history(outcome.run_id, "val_loss")
    assert outcome.objective("val_loss") == pytest.approx(min(point.value for point in history))
    assert outcome.objective("test_mse") == outcome.metrics["test_mse"]


def test_standardised_losses_are_reported_in_original_units(compose_cfg) -> None:
    """With and without standardisation, val_loss and val_mse measure the same thing."""
    for standardize in ("true", "false"):
        outcome = experiment.run(
            compose_cfg(
                "dataset=sum",
                "dataset.num_samples=200",
                "tracking.log_model=false",
                f"dataset.standardize={standardize}",
                *QUICK,
            )
        )
        assert outcome.metrics["best_val_loss"] == pytest.approx(outcome.metrics["val_mse"], rel=1e-4)


def test_a_diverging_loss_fails_the_run_with_the_reason(compose_cfg, tracking_uri) -> None:
    cfg = compose_cfg(
        "dataset=sum",
        "dataset.num_samples=200",
        "dataset.standardize=false",
        "trainer.optimizer=sgd",
        "trainer.lr=1e6",
        "trainer.grad_clip=0",
        "model=rnn",
        "model.activation=relu",
        *QUICK[:2],
    )
    with pytest.raises(TrainingDiverged, match="loss became"):
        experiment.run(cfg)
    (run,) = MlflowClient(tracking_uri).search_runs(["1"])
    assert run.info.status == "FAILED"
    assert "TrainingDiverged" in run.data.tags["error"]


def test_batch_larger_than_the_training_set_fails_before_any_run(compose_cfg, tracking_uri) -> None:
    with pytest.raises(UserError, match="trainer.batch_size"):
        experiment.run(compose_cfg("trainer.batch_size=5000"))
    assert MlflowClient(tracking_uri).search_runs(["1"]) == []


def test_ctrl_c_ends_the_run_killed_with_its_metrics_and_the_next_run_works(
    compose_cfg, tracking_uri, monkeypatch
) -> None:
    from src import tracking

    original = tracking.TrackedRun.log_epoch

    def interrupt_at_epoch_two(self, result, ended_at=None):
        original(self, result, ended_at)
        if result.epoch == 2:
            raise KeyboardInterrupt

    cfg = compose_cfg(
        "dataset=sum", "dataset.num_samples=200", "trainer.epochs=4", "trainer.patience=0", "tracking.log_model=false"
    )
    with monkeypatch.context() as patch:
        patch.setattr(tracking.TrackedRun, "log_epoch", interrupt_at_epoch_two)
        with pytest.raises(KeyboardInterrupt):
            experiment.run(cfg)
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs(["1"])
    assert run.info.status == "KILLED"
    assert [point.step for point in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]
    outcome = experiment.run(cfg)  # nothing left behind by the interrupted run gets in the way
    statuses = {run.info.run_id: run.info.status for run in client.search_runs(["1"])}
    assert statuses == {run.info.run_id: "KILLED", outcome.run_id: "FINISHED"}
    assert len(client.get_metric_history(outcome.run_id, "train_loss")) == 4


def test_artifacts_live_beside_the_sqlite_store(compose_cfg, tmp_path) -> None:
    outcome = experiment.run(compose_cfg("dataset=sum", "dataset.num_samples=200", "tracking.log_model=false", *QUICK))
    stored = list((tmp_path / "mlartifacts").rglob("predictions.csv"))
    assert [path.parent.parent.name for path in stored] == [outcome.run_id]


def test_logging_a_model_skips_mlflows_scan_of_installed_distributions(compose_cfg, monkeypatch) -> None:
    """Our pins are the installed versions, so MLflow's requirements check (which first maps every
    installed distribution to its modules, about 1 s) is skipped while the model is logged, then put back."""
    import mlflow.pyfunc
    from mlflow.utils import environment, requirements_utils

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)  # as in a fresh process
    cfg = compose_cfg("framework=numpy", "dataset=sine", "dataset.num_samples=300", *QUICK)
    outcome = experiment.run(cfg)
    assert outcome.model_uri is not None
    assert requirements_utils._MODULES_TO_PACKAGES is None  # the scan never ran
    for module in (environment, mlflow.pyfunc):
        assert (
            module.warn_dependency_requirement_mismatches is requirements_utils.warn_dependency_requirement_mismatches
        )
    model = mlflow.pyfunc.load_model(outcome.model_uri)
    assert model.predict(np.zeros((2, 20, 1), dtype=np.float32)).shape == (2, 1)
