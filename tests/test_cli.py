"""`python -m src.train` as a user runs it: clean failures for bad input, and a torch run without TensorFlow."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from mlflow import MlflowClient

from src.paths import PROJECT_ROOT
from tests.conftest import QUICK, run_cli


def runs_in(uri: str) -> list:
    client = MlflowClient(uri)
    return [run for experiment in client.search_experiments() for run in client.search_runs([experiment.experiment_id])]


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.hidden_size=0", "model.hidden_size"),
        ("trainer.lr=-1", "trainer.lr"),
        ("trainer.epochs=abc", "trainer.epochs"),
        ("dataset=nope", "dataset"),
        ("model.cell=xyz", "model.cell"),
        ("model.init=xavier", "model.init"),
        ("trainer.batch_size=100000", "trainer.batch_size"),
        ("trainer.momentum=0.9", "trainer.momentum"),
        ("optimiser=adam", "optimiser"),
        ("dataset=adding dataset.seq_len=1", "dataset.seq_len"),
    ],
)
def test_bad_override_exits_without_traceback_or_run(tmp_path, override: str, key: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(*override.split(), f"tracking.uri={uri}")
    assert result.returncode != 0
    assert key in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists() or runs_in(uri) == []


def test_unknown_cell_lists_what_is_allowed(tmp_path) -> None:
    result = run_cli("model.cell=xyz", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}")
    assert "rnn" in result.stderr and "lstm" in result.stderr and "gru" in result.stderr


def test_range_error_is_one_line(tmp_path) -> None:
    result = run_cli("model.hidden_size=0", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: model.hidden_size=0 is invalid: must be an integer in [1, 16384]"


def test_unreachable_tracking_server_fails_fast_before_training(tmp_path) -> None:
    import time

    started = time.perf_counter()
    result = run_cli("tracking.uri=http://127.0.0.1:9", "trainer=quick", timeout=60)
    assert time.perf_counter() - started < 30  # seconds, not minutes of MLflow's retries
    assert result.returncode == 2
    assert "http://127.0.0.1:9" in result.stderr and "unreachable" in result.stderr
    assert "training " not in result.stdout + result.stderr  # Hydra logs to stdout
    assert "MLflow run" not in result.stdout + result.stderr


@pytest.mark.slow
def test_default_command_trains_and_reports(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("trainer=quick", env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr
    assert "baseline linear" in result.stdout and "val_loss =" in result.stdout
    assert result.stderr == ""  # not even MLflow's INFO line about validating the input example
    (run,) = runs_in(uri)
    assert run.info.status == "FINISHED" and run.data.tags["overrides"] == "trainer=quick"
    assert len(run.data.tags["git_commit"]) == 40
    assert (PROJECT_ROOT / "outputs").is_dir()  # Hydra's own logs stay in outputs/


def test_torch_run_never_imports_tensorflow(tmp_path) -> None:
    script = textwrap.dedent(f"""
        import sys
        from hydra import compose, initialize_config_dir
        from src.paths import CONF_DIR
        from src import experiment
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=["trainer=quick", "tracking.uri=sqlite:///{tmp_path}/m.db"])
        experiment.run(cfg)
        print("tensorflow" in sys.modules, "keras" in sys.modules, "torch" in sys.modules)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["False", "False", "True"]


def test_running_from_another_folder_leaves_nothing_there(tmp_path) -> None:
    import subprocess
    import sys

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.train",
            "trainer=quick",
            "framework=numpy",
            "dataset=sum",
            "tracking.log_model=false",
            f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(elsewhere.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["numpy", "torch", "keras"])
def test_a_run_leaves_no_file_in_the_temporary_folder(tmp_path, framework: str) -> None:
    """Every Keras run left a file of TensorFlow's AutoGraph in /tmp (hundreds after a day of runs): its
    atexit hook, which removes them, never runs in the training process. Torch's empty cache folder
    (torchinductor_<user>, reused by every run) is no file."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    result = run_cli(
        f"framework={framework}",
        "dataset=sum",
        "dataset.num_samples=200",
        *QUICK,
        f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
        f"hydra.run.dir={tmp_path / 'output'}",
        env={"TMPDIR": str(temporary)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "output").is_dir()  # the run did write; just not to the temporary folder
    assert [path for path in temporary.rglob("*") if not path.is_dir()] == []


def test_an_objective_is_refused_with_exactly_the_list_that_is_checked(tmp_path) -> None:
    result = run_cli(
        "dataset=sum", "objective=test_bpc", "trainer=quick", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"
    )
    assert result.returncode == 2
    listed = result.stderr.split("must be one of ")[1].split(" for dataset")[0].split(", ")
    assert listed == ["train_loss", "val_loss", "test_mse", "test_rmse", "test_mae", "test_r2"]
    for objective in listed:  # each one the message offers is accepted
        accepted = run_cli("--cfg", "job", "dataset=sum", f"objective={objective}")
        assert accepted.returncode == 0
