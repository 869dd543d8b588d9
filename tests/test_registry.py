"""The model registry (tracking.registered_model): a run registers its model, a sweep only its best
job's as `champion`, registered models load by alias (pyfunc and src.sample), and a store that refuses
a registration costs a warning, not the run. On SQLite and on a real `mlflow server`."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from src import experiment
from src.errors import UserError
from src.paths import PROJECT_ROOT
from src.settings import settings_from
from tests.conftest import mlflow_server, run_cli
from tests.test_sweeps import sweep_of

TINY = ["dataset=sum", "dataset.num_samples=200", "framework=numpy", "trainer.epochs=2", "model.hidden_size=8"]
# A language model small enough for seconds: a sweep over two sizes of it.
TINY_LM = ["dataset=chars", "dataset.max_chars=12000", "dataset.seq_len=32", "framework=numpy", "trainer.epochs=2"]


def x_of(client: MlflowClient, run_id: str) -> np.ndarray:
    """The test inputs the run's model was logged with (its input example)."""
    model = mlflow.models.Model.load(client.get_run(run_id).data.tags["model_uri"])
    return np.asarray(model.load_input_example(), dtype=np.float32)


def test_each_single_run_registers_a_new_version_and_leaves_champion_alone(compose_cfg, tracking_uri) -> None:
    outcomes = [
        experiment.run(compose_cfg(*TINY, f"trainer.seed={seed}", "tracking.registered_model=summer"))
        for seed in (0, 1)
    ]
    reused = experiment.run(
        compose_cfg(*TINY, "trainer.seed=1", "tracking.registered_model=summer", "tracking.skip_finished=true")
    )
    assert reused.run_id == outcomes[1].run_id  # reused, trained nothing, registers nothing new
    client = MlflowClient(tracking_uri)
    versions = sorted(client.search_model_versions("name = 'summer'"), key=lambda version: int(version.version))
    assert [(int(version.version), version.run_id) for version in versions] == [
        (1, outcomes[0].run_id),
        (2, outcomes[1].run_id),
    ]
    assert client.get_registered_model("summer").aliases == {}  # a single run moves no alias
    for outcome, number in zip(outcomes, ("1", "2")):
        run = client.get_run(outcome.run_id)
        assert run.info.status == "FINISHED" and run.data.tags["registered_model_version"] == f"summer/{number}"
    mlflow.set_tracking_uri(tracking_uri)
    x = x_of(client, outcomes[1].run_id)
    expected = mlflow.pyfunc.load_model(outcomes[1].model_uri).predict(x)
    for uri in ("models:/summer/2", "models:/summer@latest"):
        np.testing.assert_array_equal(mlflow.pyfunc.load_model(uri).predict(x), expected)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["tracking.registered_model=team/model"],
            "tracking.registered_model='team/model' is invalid: must be a non-empty name without '/' or ':'",
        ),
        (["tracking.registered_model=' '"], "tracking.registered_model=' ' is invalid"),
        (
            ["tracking.registered_model=m", "tracking.log_model=false"],
            "tracking.registered_model='m' is invalid: needs tracking.log_model=true",
        ),
    ],
)
def test_a_bad_registered_model_is_refused_before_any_run(compose_cfg, tracking_uri, overrides, message) -> None:
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(")):
        settings_from(compose_cfg(*TINY, *overrides))
    with pytest.raises(UserError):
        experiment.run(compose_cfg(*TINY, *overrides))
    assert (
        not Path(tracking_uri.removeprefix("sqlite:///")).exists()
        or MlflowClient(tracking_uri).search_runs(["0"]) == []
    )


def sample_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "src.sample", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_a_sweep_registers_only_its_best_job_as_champion(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "-m",
        *TINY_LM,
        "model.hidden_size=8,16",
        "tracking.registered_model=writer",
        f"tracking.uri={uri}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, parent, _ = sweep_of(uri)
    best = parent.data.tags["best_run_id"]
    versions = client.search_model_versions("name = 'writer'")
    # the jobs registered nothing
    assert [(int(version.version), version.run_id) for version in versions] == [(1, best)], result.stdout[-3000:]
    assert client.get_registered_model("writer").aliases == {"champion": 1}
    assert parent.info.status == "FINISHED" and parent.data.tags["registered_model_version"] == "writer/1"
    assert client.get_model_version("writer", "1").tags == {
        "run_id": best,
        "sweep_id": parent.data.tags["sweep_id"],
        "objective": "val_loss",
    }

    mlflow.set_tracking_uri(uri)
    served = mlflow.pyfunc.load_model("models:/writer@champion")
    written = served.predict(["def "], params={"length": 40, "seed": 3})[0]
    sampled = sample_cli(
        "models:/writer@champion", "--prime", "def ", "--length", "40", "--seed", "3", "--tracking-uri", uri
    )
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stdout == f"def {written}\n" and len(written) == 40
    with pytest.raises(MlflowException, match="length=10001 must be in"):
        served.predict(["def "], params={"length": 10001})

    for model, error in [
        ("models:/nobody@champion", f"error: no registered model 'nobody' in {uri}"),
        ("models:/writer@best", "error: registered model 'writer' has no alias 'best' (its aliases: champion)"),
        ("models:/writer/7", "error: registered model 'writer' has no version '7' (its aliases: champion)"),
    ]:
        refused = sample_cli(model, "--tracking-uri", uri)
        assert (refused.returncode, refused.stderr) == (2, error + "\n")


def reject_registrations(database: Path) -> None:
    """The store itself refuses new model versions, as a registry that is read-only would."""
    with sqlite3.connect(database) as connection:
        connection.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON model_versions "
            "BEGIN SELECT RAISE(ABORT, 'registry is read-only'); END"
        )


@pytest.mark.slow
def test_on_a_server_a_run_registers_and_a_refused_registration_keeps_the_run(tmp_path: Path) -> None:
    with mlflow_server(tmp_path) as url:
        common = [*TINY, f"tracking.uri={url}", "tracking.registered_model=summer"]
        registered = run_cli(*common, f"hydra.run.dir={tmp_path / 'a'}")
        assert registered.returncode == 0, registered.stderr[-3000:]
        reject_registrations(tmp_path / "mlflow.db")
        refused = run_cli(*common, "tracking.registered_model=other", f"hydra.run.dir={tmp_path / 'b'}")
        assert refused.returncode == 0, refused.stderr[-3000:]

        client = MlflowClient(url)
        runs = {run.data.tags.get("registered_model_version"): run for run in client.search_runs(["1"])}
        assert set(runs) == {"summer/1", None}
        assert all(run.info.status == "FINISHED" and "test_mse" in run.data.metrics for run in runs.values())
        warnings = [line for line in refused.stdout.splitlines() if "was not registered" in line]  # Hydra's log
        assert len(warnings) == 1, refused.stdout
        assert f"run {runs[None].info.run_id} finished, but its model was not registered as 'other': " in warnings[0]
        assert client.search_model_versions("name = 'other'") == []

        mlflow.set_tracking_uri(url)
        x = x_of(client, runs["summer/1"].info.run_id)
        np.testing.assert_array_equal(
            mlflow.pyfunc.load_model("models:/summer/1").predict(x),
            mlflow.pyfunc.load_model(runs["summer/1"].data.tags["model_uri"]).predict(x),
        )


def test_sampling_a_registered_model_from_a_mistyped_store_creates_no_store(tmp_path: Path) -> None:
    result = sample_cli("models:/writer@champion", "--tracking-uri", f"sqlite:///{tmp_path / 'typo.db'}")
    assert (result.returncode, result.stderr) == (
        2,
        f"error: no tracking store at {tmp_path / 'typo.db'} (check --tracking-uri)\n",
    )
    assert not (tmp_path / "typo.db").exists()
