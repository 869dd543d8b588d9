"""A real `mlflow server` on 127.0.0.1: training over HTTP, the REST API, and the UI in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from src.paths import PROJECT_ROOT
from tests.conftest import mlflow_server, run_cli

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


SERVER_ROOTS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("server")
    with mlflow_server(root) as url:
        SERVER_ROOTS[url] = root
        yield url


def server_root(url: str) -> Path:
    """The folder holding the server's store and artifacts."""
    return SERVER_ROOTS[url]


def rest(url: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}",
        method="POST" if body else "GET",
        data=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def sweep(server: str) -> dict:
    result = run_cli(
        "-m",
        "framework=numpy,torch",
        "dataset=sum",
        "dataset.num_samples=200",
        "trainer=quick",
        f"tracking.uri={server}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    experiment = rest(server, "experiments/get-by-name?experiment_name=rnnlab")["experiment"]
    runs = rest(server, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    return {"experiment_id": experiment["experiment_id"], "runs": runs}


def tags_of(run: dict) -> dict:
    return {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}


def test_runs_trained_over_http_read_back_through_the_rest_api(server: str, sweep: dict) -> None:
    runs = sweep["runs"]
    assert len(runs) == 3
    parent = next(run for run in runs if tags_of(run).get("sweep") == "parent")
    children = [run for run in runs if run is not parent]
    for child in children:
        fetched = rest(server, f"runs/get?run_id={child['info']['run_id']}")["run"]
        assert fetched["info"]["status"] == "FINISHED"
        assert tags_of(fetched)["mlflow.parentRunId"] == parent["info"]["run_id"]
        metrics = {metric["key"]: metric["value"] for metric in fetched["data"]["metrics"]}
        assert metrics["test_mse"] >= 0 and "baseline_linear_test_mse" in metrics
        history = rest(server, f"metrics/get-history?run_id={child['info']['run_id']}&metric_key=val_loss")
        assert [point["step"] for point in history["metrics"]] == [1, 2, 3]
    model_uri = tags_of(children[0])["model_uri"]
    import mlflow

    mlflow.set_tracking_uri(server)
    assert mlflow.pyfunc.load_model(model_uri).metadata.signature is not None


def chromium() -> str:
    """Debian's chromium, which `make test` installs (the Makefile's `browser` target); a test installs nothing."""
    found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium is not installed: `make browser` installs it (needs root and apt-get)")
    return found


def test_the_ui_lists_the_sweep_runs(server: str, sweep: dict, tmp_path: Path) -> None:
    parent = next(run for run in sweep["runs"] if tags_of(run).get("sweep") == "parent")
    # The page `make ui` points to (`python -m src.runs page`): MLflow 3 opens an experiment on its GenAI
    # overview, so the command gives the runs table's own address.
    shown = subprocess.run(
        [sys.executable, "-m", "src.runs", "page", "--tracking-uri", server, "--ui", server],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    page = shown.stdout.strip()
    assert page == f"{server}/#/experiments/{sweep['experiment_id']}/runs", shown.stderr
    result = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            page,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", result.stdout, flags=re.S)))
    assert parent["info"]["run_name"] in text, text[:2000]
    assert "3 matching runs" in text


def test_credentials_travel_in_the_environment_and_a_secret_uri_is_refused(server: str, tmp_path: Path) -> None:
    secret = "SweepPW99s3cr3t"
    environment = {"MLFLOW_TRACKING_USERNAME": "carol", "MLFLOW_TRACKING_PASSWORD": secret}
    good = run_cli(
        "dataset=sum",
        "dataset.num_samples=200",
        "trainer=quick",
        "tracking.log_model=false",
        "tracking.experiment=credentials",
        f"tracking.uri={server}",
        f"hydra.run.dir={tmp_path / 'run'}",
        env=environment,
    )
    assert good.returncode == 0, good.stderr[-3000:]
    outputs = [good]
    secret_uri = server.replace("http://", f"http://carol:{secret}@")
    for args in (
        ["trainer=quick", f"tracking.uri={secret_uri}", f"hydra.run.dir={tmp_path / 'refused'}"],
        [
            "-m",
            "hydra/launcher=joblib_local",
            "trainer.seed=0,1",
            "trainer=quick",
            f"tracking.uri={secret_uri}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        ["trainer=quick", f"tracking.uri='{server}/?access_token={secret}'", f"hydra.run.dir={tmp_path / 'q'}"],
    ):
        refused = run_cli(*args)
        assert refused.returncode == 2 and refused.stderr.startswith("error: tracking.uri carries a"), refused.stderr
        outputs.append(refused)
    for result in outputs:
        assert secret not in result.stdout + result.stderr
    written = [path for folder in (tmp_path, server_root(server)) for path in folder.rglob("*") if path.is_file()]
    assert any(path.name == "mlflow.db" for path in written) and any(".hydra" in str(path) for path in written)
    assert not [path for path in written if secret.encode() in path.read_bytes()]
    experiment = rest(server, "experiments/get-by-name?experiment_name=credentials")["experiment"]
    (run,) = rest(server, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert run["info"]["status"] == "FINISHED" and secret not in json.dumps(run)
