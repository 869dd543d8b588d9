"""`make serve`: a real `mlflow models serve` started from the venv with a PATH that lacks it (as from a
shell where the venv is not activated), answering /invocations exactly as the pyfunc model predicts."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from src import experiment
from src.paths import PROJECT_ROOT
from tests.conftest import free_port

VENV = Path(sys.prefix)


@contextlib.contextmanager
def served(model_uri: str, tracking_uri: str, log: Path) -> Iterator[str]:
    """`make serve MODEL=... PORT=...` until the block ends; its URL once /ping answers."""
    port = free_port()
    environment = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        ["make", "-s", "serve", f"MODEL={model_uri}", f"PORT={port}", f"VENV={VENV}"],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, f"make serve exited: {log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "the model server did not answer /ping within 120 s"
                time.sleep(0.25)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


def invocations(url: str, body: dict) -> list:
    request = urllib.request.Request(
        f"{url}/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["predictions"]


# `make serve VENV=<this interpreter's venv>`: serving installs nothing, it needs the venv's mlflow.
needs_make = pytest.mark.skipif(
    shutil.which("make") is None or not (VENV / "bin" / "mlflow").exists(), reason="needs make and a venv with mlflow"
)
TINY = ["dataset.num_samples=200", "framework=numpy", "trainer.epochs=2", "model.hidden_size=8"]
TINY_LM = ["dataset.max_chars=12000", "dataset.seq_len=32", "framework=numpy", "trainer.epochs=2"]


def refused(url: str, body: dict) -> tuple[int, str]:
    """The HTTP status and MLflow's error code of a request the server refuses."""
    with pytest.raises(urllib.error.HTTPError) as error:
        invocations(url, body)
    return error.value.code, json.loads(error.value.read())["error_code"]


@pytest.mark.slow
@needs_make
@pytest.mark.parametrize("dataset", ["sum", "parity"])
def test_the_served_model_answers_as_pyfunc_predicts(compose_cfg, tracking_uri, tmp_path: Path, dataset: str) -> None:
    outcome = experiment.run(compose_cfg(f"dataset={dataset}", *TINY, "tracking.registered_model=served"))
    MlflowClient(tracking_uri).set_registered_model_alias("served", "champion", "1")
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(outcome.model_uri)
    x = np.asarray(model.input_example, dtype=np.float32)
    expected = model.predict(x)
    with served("models:/served@champion", tracking_uri, tmp_path / "serve.log") as url:
        answer = np.asarray(invocations(url, {"inputs": x.tolist()}), dtype=np.float32)
        assert refused(url, {"inputs": x[:, :2].tolist()}) == (400, "INVALID_PARAMETER_VALUE")  # too few steps
    np.testing.assert_array_equal(answer, expected)
    if dataset == "parity":  # a classifier answers with each class's probability
        np.testing.assert_allclose(answer.sum(axis=1), 1.0, rtol=1e-6)
        assert answer.shape == (len(x), 2)


@pytest.mark.slow
@needs_make
def test_a_served_language_model_takes_text_and_writes_text(compose_cfg, tracking_uri, tmp_path: Path) -> None:
    outcome = experiment.run(compose_cfg("dataset=chars", *TINY_LM))
    mlflow.set_tracking_uri(tracking_uri)
    params = {"length": 50, "temperature": 0.7, "seed": 2}
    expected = list(mlflow.pyfunc.load_model(outcome.model_uri).predict(["def ", "x = "], params=params))
    with served(outcome.model_uri, tracking_uri, tmp_path / "serve.log") as url:
        answer = invocations(url, {"inputs": ["def ", "x = "], "params": params})
        defaults = invocations(url, {"inputs": ["def "]})
        assert refused(url, {"inputs": ["def "], "params": {"length": 100000}}) == (400, "INVALID_PARAMETER_VALUE")
        # A request's whole work is bounded (2000 primes of length 10000 would have run for most of an hour),
        # and a temperature that only draws noise is refused.
        many = {"inputs": ["def "] * 11, "params": {"length": 10000}}
        assert refused(url, many) == (400, "INVALID_PARAMETER_VALUE")
        assert refused(url, {"inputs": ["d" * 200_000]}) == (400, "INVALID_PARAMETER_VALUE")
        assert refused(url, {"inputs": ["def "], "params": {"temperature": 1e308}}) == (400, "INVALID_PARAMETER_VALUE")
    assert answer == expected and len(answer[0]) == 50
    assert len(defaults[0]) == 200  # the default length, as src.sample's


def test_make_serve_without_a_model_says_what_to_give() -> None:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    result = subprocess.run(["make", "-s", "serve"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: give the model: make serve MODEL=<models:/NAME@champion")
