"""A single run trains in a forked child process (src/training_process.py): the same numbers as training
in one process, no training left behind when the run is stopped, and the child's failures reach the
run. (kill -9: tests/test_faults.py checks that the training process dies with the run's.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil
import pytest
from mlflow import MlflowClient

from src import training_process
from src.frameworks.checkpoint import EpochResult
from tests.conftest import PROJECT_ROOT, run_cli
from tests.test_faults import all_runs, epochs_logged, longer_epochs, start_cli, wait_for

pytestmark = pytest.mark.slow

SMALL = ["dataset=sum", "dataset.num_samples=300", "model.hidden_size=8", "trainer.patience=0"]


# `python -m src.train` as it runs from a shell (its training process forked at the start), then which
# frameworks the run's own process imported.
FRAMEWORKS_IMPORTED_SCRIPT = """
import runpy, sys
sys.argv[0] = "src/train.py"
try:
    runpy.run_module("src.train", run_name="__main__", alter_sys=True)
finally:
    print("frameworks imported here:", sorted({"torch", "tensorflow", "keras"} & set(sys.modules)))
"""


def finished_run(tmp_path, name: str, *args: str, script: str | None = None):
    uri = f"sqlite:///{tmp_path / f'{name}.db'}"
    if script is None:
        result = run_cli(*SMALL, *args, f"tracking.uri={uri}")
    else:
        command = [sys.executable, "-c", script, *SMALL, *args, f"tracking.uri={uri}"]
        result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = all_runs(uri)
    return MlflowClient(uri), run, result


def model_outputs(uri: str, run) -> tuple[np.ndarray, np.ndarray]:
    """The run's logged model's outputs for its input example, and the run's own test predictions of
    those rows (predictions.csv)."""
    import mlflow.artifacts
    import mlflow.pyfunc
    import pandas as pd

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    example = np.asarray(model.input_example, dtype=np.float32)
    csv = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="predictions.csv")
    return model.predict(example)[:, 0], pd.read_csv(csv)["y_pred_model"].to_numpy()[: len(example)]


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_training_in_a_child_process_gives_the_numbers_of_training_in_one(tmp_path, framework) -> None:
    config = [f"framework={framework}", "trainer.epochs=6"]
    forked_client, forked, output = finished_run(tmp_path, "forked", *config, script=FRAMEWORKS_IMPORTED_SCRIPT)
    inline_client, inline, _ = finished_run(tmp_path, "inline", *config, "trainer.subprocess=false")
    assert "in process" in output.stdout + output.stderr  # the log names the training process
    # The run's process left everything that needs the network to the training process, even logging
    # the model: it never imported a framework.
    assert "frameworks imported here: []" in output.stdout
    timing = ("train_seconds", "epoch_seconds")
    assert {k: v for k, v in forked.data.metrics.items() if k not in timing} == {
        k: v for k, v in inline.data.metrics.items() if k not in timing
    }
    assert len(forked.data.metrics) > 10
    for name in ("train_loss", "val_loss"):
        forked_history = [(p.step, p.value) for p in forked_client.get_metric_history(forked.info.run_id, name)]
        inline_history = [(p.step, p.value) for p in inline_client.get_metric_history(inline.info.run_id, name)]
        assert sorted(forked_history) == sorted(inline_history) and len(forked_history) == 6
    # Each logged model predicts its input example as the run's own evaluation did (float32 outputs in
    # the CSV with 9 significant digits), and both runs logged the same model.
    forked_model, forked_csv = model_outputs(f"sqlite:///{tmp_path / 'forked.db'}", forked)
    inline_model, inline_csv = model_outputs(f"sqlite:///{tmp_path / 'inline.db'}", inline)
    assert len(forked_model) == 5
    np.testing.assert_allclose(forked_model, forked_csv, rtol=1e-6)
    np.testing.assert_array_equal(forked_model, inline_model)
    np.testing.assert_array_equal(forked_csv, inline_csv)


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


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_or_ctrl_c_ends_the_run_killed_and_stops_its_training_process(tmp_path, number) -> None:
    process, trainer, uri = training_run(tmp_path)
    try:
        started = time.monotonic()
        process.send_signal(number)
        _, errors = process.communicate(timeout=60)
        assert time.monotonic() - started < 30
        assert process.returncode == 128 + number  # 143, 130: what a shell reports for these signals
        assert errors.strip().splitlines() == [
            f"error: stopped by {signal.Signals(number).name}; unfinished runs end KILLED with what they logged "
            "(tracking.resume=true continues them)"
        ]
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
    config = ["framework=numpy", *longer_epochs(3000), "trainer.epochs=40", "trainer.patience=0"]
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
    assert run.info.status == "FINISHED" and "error" not in run.data.tags  # the old failure's reason is gone


def test_the_training_process_is_forked_before_hydra_composes_and_works_where_the_run_does(tmp_path) -> None:
    """`prestart`: the child that trains was forked before Hydra composed the config, and runs the job in
    the run's working directory (here Hydra's output folder: hydra.job.chdir=true)."""
    output = tmp_path / "hydra"
    config = ("framework=numpy", *SMALL, "trainer.epochs=100000", f"hydra.run.dir={output}", "hydra.job.chdir=true")
    process, trainer, uri = training_run(tmp_path, *config)
    try:
        assert trainer.cwd() == psutil.Process(process.pid).cwd() == str(output)
    finally:
        process.kill()
    assert f"in process {trainer.pid} (started before the config was composed)" in (output / "train.log").read_text()


PRESTART_SCRIPT = """
import os, sys, psutil
from src import training_process
training_process.prestart(sys.argv[1:])
if training_process._prestarted is None:
    print("none")
    raise SystemExit
pid = training_process._prestarted[0]
alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
training_process.discard_prestarted()
print(alive, psutil.pid_exists(pid))
"""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["framework=numpy", "trainer.epochs=2"], "True False"),  # forked, then killed and reaped
        (["-m", "framework=numpy"], "none"),  # a sweep: each job trains in its own way
        (["--cfg", "job"], "none"),
        (["hparams_search=optuna"], "none"),  # may make it a sweep
        (["trainer.subprocess=false"], "none"),  # trains in the run's process
    ],
)
def test_a_prestarted_training_process_is_only_made_for_a_single_run_and_discarded_unused(argv, expected) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PRESTART_SCRIPT, *argv], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == expected


def test_the_training_left_is_the_mean_epoch_times_the_epochs_to_go() -> None:
    epochs = [EpochResult(4, 1.0, 1.0, 2.0), EpochResult(5, 1.0, 1.0, 4.0)]  # a run resumed at epoch 4
    assert training_process.training_left_seconds(epochs, 10) == pytest.approx(15.0)
    assert training_process.training_left_seconds(epochs, 5) == 0.0
    assert training_process.training_left_seconds([], 10) == 0.0  # no estimate yet: not worth a figure


def test_the_framework_a_command_line_trains_with_is_known_before_composing() -> None:
    from hydra import compose, initialize_config_dir

    from src.paths import CONF_DIR
    from src.training_process import framework_named

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        default = compose("config").framework.name.value
    assert framework_named([]) == default
    assert framework_named(["model=lstm", "framework=keras"]) == "keras"
    assert framework_named(["framework=keras", "++framework=numpy"]) == "numpy"
    assert framework_named(["experiment=sum_tuned"]) is None  # an experiment may choose one
    assert framework_named(["+experiment=sum_tuned", "framework=torch"]) == "torch"
    # The value wins over the group's choice, wherever it stands (what Hydra composes).
    assert framework_named(["framework.name=torch", "framework=keras"]) == "torch"
    assert framework_named(["framework=keras", "framework.threads=2"]) == "keras"


def test_the_training_process_logs_through_the_jobs_logging_set_up(tmp_path) -> None:
    """Its records reach Hydra's console and train.log handlers, as hydra.verbose asks (the per-epoch
    debug line), although it was forked before Hydra set them up."""
    output = tmp_path / "hydra"
    _, _, result = finished_run(tmp_path, "logged", "framework=numpy", "trainer.epochs=3", "hydra.verbose=true",
                                f"hydra.run.dir={output}")  # fmt: skip
    epoch_lines = [line for line in (output / "train.log").read_text().splitlines() if "epoch 2: train_loss" in line]
    assert len(epoch_lines) == 1 and "[DEBUG]" in epoch_lines[0]
    assert "epoch 3: train_loss" in result.stdout + result.stderr


def test_a_job_environment_set_by_hydra_gets_a_training_process_forked_after_it(tmp_path) -> None:
    """hydra.job.env_set may name what a framework reads as it is imported (OMP_NUM_THREADS): the child
    prestarted without it is not used; one forked once Hydra set it is."""
    output = tmp_path / "hydra"
    config = ("framework=numpy", *SMALL, "trainer.epochs=100000", f"hydra.run.dir={output}",
              "+hydra.job.env_set.RNNLAB_PROBE=1")  # fmt: skip
    process, trainer, uri = training_run(tmp_path, *config)
    try:
        assert len(psutil.Process(process.pid).children()) == 1  # the unused one is gone
    finally:
        process.kill()
    logged = (output / "train.log").read_text()
    assert f"in process {trainer.pid}" in logged and "started before the config was composed" not in logged


FALLBACK_SCRIPT = """
import psutil
from hydra import compose, initialize_config_dir
from src import data, tasks, training_process
from src.paths import CONF_DIR
from src.settings import settings_from

training_process.prestart(["framework=numpy"])
early = training_process._prestarted[0]
training_process._job_logging = lambda: (lambda: None)  # a job that cannot be pickled
with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
    cfg = compose("config", overrides=["framework=numpy", "dataset=sum", "dataset.num_samples=300"])
settings = settings_from(cfg)
splits = data.generate(settings.dataset, 0)
trainer = training_process.TrainingProcess.start(settings, splits, tasks.get(splits.info.task), wait_for_go=False)
print(trainer.prestarted, trainer.pid != early, psutil.pid_exists(early), trainer.wait_ready())
trainer.stop()
"""


def test_a_job_the_prestarted_process_cannot_take_goes_to_one_forked_with_it() -> None:
    result = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "False True False cpu"


WARM_UP_SCRIPT = """
import sys, time
import psutil
from hydra import compose, initialize_config_dir
from src import data, plots, tasks, training_process
from src.paths import CONF_DIR
from src.settings import settings_from

drawn = []
warm_up = plots.warm_up
plots.warm_up = lambda: drawn.append(warm_up())
if sys.argv[1] != "default":
    training_process.WARM_UP_FIGURE_LEAD_SECONDS = float(sys.argv[1])
with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
    cfg = compose("config", overrides=["framework=numpy", "dataset=sum", "model.hidden_size=8", "trainer.patience=0",
                                       *sys.argv[2:]])
settings = settings_from(cfg)
splits = data.generate(settings.dataset, 0)
trainer = training_process.TrainingProcess.start(settings, splits, tasks.get(splits.info.task), wait_for_go=True)
trainer.wait_ready()
trainer.go(None, None)
if settings.trainer.epochs < 5:  # wait until the child has trained, predicted and exited
    deadline = time.monotonic() + 120
    while psutil.Process(trainer.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
epochs = []
fit = trainer.results(lambda result, ended_at: epochs.append(result.epoch))
trainer.trained()[1]["test"]
print(len(drawn), epochs == list(range(1, settings.trainer.epochs + 1)), len(fit.history))
"""


@pytest.mark.parametrize(
    ("lead", "overrides", "expected"),
    [
        ("default", ["dataset.num_samples=300", "trainer.epochs=2"], "0 True 2"),  # trained before the parent asked
        ("default", ["dataset.num_samples=3000", "trainer.epochs=100"], "1 True 100"),  # still training meanwhile
        ("100000", ["dataset.num_samples=3000", "trainer.epochs=100"], "0 True 100"),  # ... but not for that long
    ],
)
def test_the_parent_draws_its_warm_up_figure_only_while_the_child_still_trains(lead, overrides, expected) -> None:
    """Drawn after training, the throw-away figure would only add its cost (about 1 s of CPU); drawn
    in the last seconds of training, it would end after training and delay the figures that count."""
    result = subprocess.run(
        [sys.executable, "-c", WARM_UP_SCRIPT, lead, *overrides],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == expected


def test_saved_predictor_folders_of_dead_processes_are_removed_and_no_others(tmp_path, monkeypatch) -> None:
    """A run killed between saving its predictor and logging it left the folder in the temporary folder."""
    import os
    import socket

    from src import predictor

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    host, me = socket.gethostname(), psutil.Process()
    dead = subprocess.Popen(["true"])
    dead.wait()
    names = {
        "mine": f"rnnlab-trained-{host}-{me.pid}-{me.create_time():.3f}-abc_123",
        "dead": f"rnnlab-trained-{host}-{dead.pid}-{me.create_time():.3f}-abc_123",
        "reused": f"rnnlab-trained-{host}-{me.pid}-{me.create_time() - 100:.3f}-abc_123",  # my PID, another start
        "other host": f"rnnlab-trained-not-{host}-{dead.pid}-{me.create_time():.3f}-abc_123",
        "not ours": "rnnlab-trained-x",
    }
    for name in names.values():
        (tmp_path / name / "predictor").mkdir(parents=True)
    removed = predictor.remove_abandoned_folders()
    assert sorted(path.name for path in removed) == sorted([names["dead"], names["reused"]])
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [names["mine"], names["other host"], names["not ours"]]
    )
    made = predictor.temporary_folder(os.getpid())
    assert made.parent == tmp_path and predictor.remove_abandoned_folders() == [] and made.exists()
