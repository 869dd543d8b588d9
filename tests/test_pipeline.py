"""The DVC pipeline, with the real dvc CLI in a temporary git repository holding a copy of the project."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from src.frameworks import FRAMEWORKS
from src.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

COPIED = [
    "conf",
    "src",
    "pipelines",
    "hydra_plugins",
    "dvc.yaml",
    "params.yaml",
    ".dvc/config",
    ".dvcignore",
    ".gitignore",
    "pyproject.toml",
]
SMALL = {"trainer": {"epochs": 3, "patience": 0}, "model": {"hidden_size": 8}, "tracking": {"log_model": False}}


def sh(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def run_record(repo: Path, framework: str) -> dict:
    return json.loads((repo / "reports" / framework / "mlflow_run.json").read_text())


def edit_params(repo: Path, changes: dict) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for group, values in changes.items():
        params[group].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh clone's worth of the project, with small params, after one full `dvc repro`."""
    root = tmp_path_factory.mktemp("project")
    for name in COPIED:
        source, target = PROJECT_ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    edit_params(root, SMALL)
    sh(root, "git", "init", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "project")
    first = sh(root, "dvc", "repro")
    assert ran(first.stdout) == {"generate", *(f"{stage}@{fw}" for stage in ("train", "evaluate") for fw in FRAMEWORKS)}
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "repro")
    return root


def test_committed_params_equal_the_composition_of_conf() -> None:
    from pipelines.params import composed_params_yaml

    assert (PROJECT_ROOT / "params.yaml").read_text() == composed_params_yaml()
    from pipelines.params import FRAMEWORKS_FILE, frameworks_yaml

    assert FRAMEWORKS_FILE.read_text() == frameworks_yaml()
    assert yaml.safe_load(frameworks_yaml())["frameworks"] == list(FRAMEWORKS)


def test_every_stage_depends_on_all_the_code_it_imports() -> None:
    """A stage's deps cover every src/ and pipelines/ module it imports, directly or not (the import graph,
    read from the source), so `dvc status` never calls a stage up to date whose code changed."""
    from tests.test_architecture import import_graph

    graph = import_graph(PROJECT_ROOT / "src", PROJECT_ROOT / "pipelines")
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for stage, entry in (
        ("generate", "pipelines.generate"),
        ("train", "pipelines.train"),
        ("evaluate", "pipelines.evaluate"),
    ):
        definition = stages[stage].get("do", stages[stage])
        deps = [PROJECT_ROOT / dep for dep in definition["deps"] if "${" not in dep]
        needed, queue = set(), [entry]
        while queue:
            module = queue.pop()
            if module not in needed:
                needed.add(module)
                queue += graph.get(module, ())
        if stage != "generate":  # the framework is imported by name (src/frameworks/__init__.py)
            needed.add("src.frameworks.torch")
        files = [PROJECT_ROOT.joinpath(*module.split(".")) for module in needed]
        files = [path / "__init__.py" if path.is_dir() else path.with_suffix(".py") for path in files]
        missing = [
            str(path.relative_to(PROJECT_ROOT))
            for path in files
            if not any(path == dep or path.is_relative_to(dep) for dep in deps)
        ]
        assert not missing, f"{stage} lacks deps: {missing}"


def test_repro_writes_metrics_per_framework_and_one_mlflow_run_each(repo: Path) -> None:
    shown = json.loads(sh(repo, "dvc", "metrics", "show", "--json").stdout)
    metrics = next(iter(shown.values()))["data"]
    for framework in FRAMEWORKS:
        values = metrics[f"metrics/{framework}.json"]["data"]
        assert values["test_mse"] >= 0 and values["baseline_linear_test_mse"] < 1e-6  # exact on next_number
        assert all(type(value) in (int, float) for value in values.values()), values  # numbers only
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id])
    assert sorted(run.data.tags["framework"] for run in runs) == sorted(FRAMEWORKS)
    for run in runs:
        framework = run.data.tags["framework"]
        assert run.info.status == "FINISHED"
        assert run.data.tags["stage.train"] == f"train@{framework}"
        assert run.data.tags["stage.evaluate"] == f"evaluate@{framework}"
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 3  # from train
        assert "test_mse" in run.data.metrics  # from evaluate, into the same run
        assert run_record(repo, framework)["run_id"] == run.info.run_id
        assert "dvc.exp_name" not in run.data.tags  # `dvc repro` is no experiment


def test_data_and_models_live_in_the_dvc_cache_not_git(repo: Path) -> None:
    tracked = sh(repo, "git", "ls-files").stdout.split()
    assert "data/splits.npz" not in tracked and not any(
        path.startswith("models/") and not path.endswith(".gitignore") for path in tracked
    )
    assert {"metrics/torch.json", "reports/torch/mlflow_run.json", "dvc.lock"} <= set(tracked)
    assert any((repo / ".dvc" / "cache").rglob("*"))
    for framework in FRAMEWORKS:
        header = (repo / "reports" / framework / "loss.csv").read_text().splitlines()[0]
        assert header.startswith("epoch,train_loss,val_loss")


def test_second_repro_runs_nothing(repo: Path) -> None:
    assert ran(sh(repo, "dvc", "repro").stdout) == set()


def test_trainer_param_reruns_train_and_evaluate_but_not_generate(repo: Path) -> None:
    lr = yaml.safe_load((repo / "params.yaml").read_text())["trainer"]["lr"]
    edit_params(repo, {"trainer": {"lr": lr * 2}})
    result = sh(repo, "dvc", "repro", "evaluate@torch")
    assert ran(result.stdout) == {"train@torch", "evaluate@torch"}
    sh(repo, "git", "checkout", "params.yaml", "dvc.lock", "metrics", "reports")


def test_dataset_param_reruns_all_three(repo: Path) -> None:
    edit_params(repo, {"dataset": {"seq_len": 4}})
    result = sh(repo, "dvc", "repro", "evaluate@numpy")
    assert ran(result.stdout) == {"generate", "train@numpy", "evaluate@numpy"}
    sh(repo, "git", "checkout", "params.yaml", "dvc.lock", "metrics", "reports")
    sh(repo, "dvc", "checkout", "-q")


def test_exp_run_composes_conf_with_overrides(repo: Path) -> None:
    sh(
        repo,
        "dvc",
        "exp",
        "run",
        "evaluate@torch",
        "-S",
        "model=gru",
        "-S",
        "trainer.lr=0.02",
        "-S",
        "trainer.epochs=2",
        "-S",
        "model.hidden_size=4",
        "-S",
        "tracking.log_model=false",
    )
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["model"]["cell"] == "gru" and params["trainer"]["lr"] == 0.02 and params["trainer"]["epochs"] == 2
    defaults = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())  # conf/ composed (a test checks)
    assert params["trainer"]["batch_size"] == defaults["trainer"]["batch_size"]  # the rest: conf/'s defaults
    run = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}").get_run(run_record(repo, "torch")["run_id"])
    assert run.data.tags["cell"] == "gru" and run.data.params["trainer.lr"] == "0.02"
    shown = sh(repo, "dvc", "exp", "show", "--json").stdout
    assert "gru" in shown
    name = sh(repo, "git", "for-each-ref", "--format=%(refname:lstrip=-1)", "refs/exps").stdout.split()
    assert run.data.tags["dvc.exp_name"] in name
    assert run.data.tags["dvc.baseline_rev"] == sh(repo, "git", "rev-parse", "HEAD").stdout.strip()


@pytest.mark.parametrize("damage, message", [("missing", "data file missing"), ("corrupt", "data file corrupt")])
def test_bad_data_file_fails_the_stage_with_a_clear_error(repo: Path, damage: str, message: str) -> None:
    data_file = repo / "data" / "splits.npz"
    saved = data_file.read_bytes()
    data_file.unlink()
    if damage == "corrupt":
        data_file.write_bytes(b"not an npz file")
    try:
        result = sh(repo, "python", "-m", "pipelines.train", "torch", check=False)
    finally:
        data_file.unlink(missing_ok=True)
        data_file.write_bytes(saved)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}: {data_file}")


def test_a_secret_in_the_params_tracking_uri_fails_the_stage_and_reaches_no_dvc_file(repo: Path) -> None:
    secret = "DvcPW77s3cr3t"
    params = repo / "params.yaml"
    saved = params.read_text()
    edit_params(repo, {"tracking": {"uri": f"http://dave:{secret}@127.0.0.1:5999"}, "trainer": {"epochs": 4}})
    try:
        result = sh(repo, "dvc", "repro", "train@numpy", check=False)
    finally:
        params.write_text(saved)
    assert result.returncode != 0
    assert "error: tracking.uri carries a password" in result.stderr
    assert secret not in result.stdout + result.stderr
    leaked = [
        path
        for path in repo.rglob("*")
        if path.is_file() and path != params and ".git" not in path.parts and secret.encode() in path.read_bytes()
    ]
    assert not leaked


def wait_for_queue(repo: Path, name: str, timeout: float = 600) -> None:
    """Until DVC's queue worker has finished the experiment `name` (and removed its temporary copy)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = sh(repo, "dvc", "queue", "status").stdout
        line = next((line for line in status.splitlines() if f" {name} " in line), "")
        if line and not re.search(r"\b(Queued|Running)\b", line):
            logs = sh(repo, "dvc", "queue", "logs", name, check=False)
            assert "Success" in line, f"{status}\n{logs.stdout}\n{logs.stderr}"
            return
        time.sleep(3)
    raise AssertionError(f"experiment {name} still queued or running after {timeout} s")


@pytest.mark.parametrize("mode", ["--queue", "--temp"])
def test_an_experiment_in_dvcs_temporary_copy_logs_to_the_projects_store_and_its_model_loads_afterwards(
    repo: Path, tmp_path: Path, mode: str
) -> None:
    """DVC runs a queued or temporary experiment in .dvc/tmp/exps/... and deletes that copy afterwards:
    the run, its model and its checkpoints must land in the real project's store."""
    name = f"copy{mode.replace('-', '')}"
    settings = ["-S", "trainer.epochs=2", "-S", "model.hidden_size=4", "-S", "tracking.log_model=true"]
    sh(repo, "dvc", "exp", "run", mode, "--name", name, "evaluate@numpy", *settings)
    if mode == "--queue":
        sh(repo, "dvc", "queue", "start")
        try:
            wait_for_queue(repo, name)
        finally:
            sh(repo, "dvc", "queue", "stop")  # its worker may stay idle, waiting for more
    deadline = time.monotonic() + 60
    while list((repo / ".dvc" / "tmp" / "exps").rglob("tmp*")) and time.monotonic() < deadline:
        time.sleep(1)
    assert not list((repo / ".dvc" / "tmp" / "exps").rglob("tmp*")), "DVC kept its temporary copy"

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment_id = client.get_experiment_by_name("rnnlab").experiment_id
    [run] = client.search_runs([experiment_id], f"tags.`dvc.exp_name` = '{name}'")
    assert run.info.status == "FINISHED" and run.data.tags["stage.evaluate"] == "evaluate@numpy"
    assert run.info.run_name == f"{name}-numpy"
    assert run.data.tags["dvc.baseline_rev"] == sh(repo, "git", "rev-parse", "HEAD").stdout.strip()
    assert run.info.artifact_uri.startswith((repo / "mlartifacts").as_uri())
    [ref] = [ref for ref in sh(repo, "git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
             if ref.endswith(f"/{name}")]  # fmt: skip
    assert (
        json.loads(sh(repo, "git", "show", f"{ref}:reports/numpy/mlflow_run.json").stdout)["run_id"] == run.info.run_id
    )

    from src.data.base import Splits

    np.save(tmp_path / "x.npy", Splits.load(repo / "data" / "splits.npz").test.x)
    load = (
        "import json, sys, mlflow, numpy as np; "
        "print(json.dumps(mlflow.pyfunc.load_model(sys.argv[1]).predict(np.load(sys.argv[2])).ravel().tolist()))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", load, run.data.tags["model_uri"], str(tmp_path / "x.npy")],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr
    reported = pd.read_csv(io.StringIO(sh(repo, "git", "show", f"{ref}:reports/numpy/predictions.csv").stdout))
    np.testing.assert_allclose(json.loads(loaded.stdout), reported["y_pred_model"], rtol=1e-6)
    if mode == "--queue":
        check_readmes_exp_show(repo)


def check_readmes_exp_show(repo: Path) -> None:
    """README's `dvc exp show --only-changed --drop ...`, run as written (with --csv), leaves the
    test_mse of each framework whose metrics differ between the rows, the params that differ, and no
    dependency hashes."""
    readme = (PROJECT_ROOT / "README.md").read_text().splitlines()
    command = next(line.removeprefix("$ ") for line in readme if line.startswith("$ dvc exp show --only-changed"))
    shown = sh(repo, *shlex.split(command), "--csv").stdout
    header = shown.splitlines()[0].split(",")
    metrics = [column for column in header if column.startswith("metrics/")]
    assert "metrics/numpy.json:test_mse" in metrics and all(column.endswith(":test_mse") for column in metrics), shown
    assert "trainer.epochs" in header and "trainer.seed" not in header  # 2 in the experiment, 3 in its baseline
    assert not [column for column in header if "/" in column and column not in metrics], shown
    assert not {"Created", "Executor"} & set(header)


def test_check_lock_passes_on_a_fresh_clone_and_names_what_the_lock_no_longer_covers(
    repo: Path, tmp_path: Path
) -> None:
    """A fresh clone has no DVC cache (data and models "not in cache"): that alone passes; changed code or
    params fail in one line that says what to do."""
    clone = tmp_path / "clone"
    sh(repo, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "data" / "splits.npz").exists()
    assert sh(clone, "python", "-m", "pipelines.check_lock").returncode == 0

    with (clone / "src" / "evaluation.py").open("a") as source:
        source.write("# changed\n")
    edit_params(clone, {"trainer": {"lr": 0.5}})
    stale = sh(clone, "python", "-m", "pipelines.check_lock", check=False)
    assert stale.returncode == 1
    [line] = stale.stderr.strip().splitlines()
    assert line.startswith("error: dvc.lock does not match") and "run `make repro` and commit" in line
    assert "src/evaluation.py modified" in line and "params.yaml trainer modified" in line
