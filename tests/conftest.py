"""Shared fixtures: real Hydra composition from conf/ and a temporary SQLite MLflow store per test."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src.paths import CONF_DIR, PROJECT_ROOT
from src.store_template import ensure_template

# Small and fast: enough to see every part of the workflow run.
QUICK = ["trainer.epochs=3", "trainer.patience=0", "model.hidden_size=8", "trainer.batch_size=32"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--serial",
        choices=("all", "skip", "only"),
        default="all",
        help="tests marked serial: run them with the rest (all), leave them out (skip: the parallel part of "
        "`make test`), or run only them (only: its second part, alone on the machine)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = config.getoption("--serial")
    if mode == "all":
        return
    keep, leave = [], []
    for item in items:
        selected = (item.get_closest_marker("serial") is not None) == (mode == "only")
        (keep if selected else leave).append(item)
    config.hook.pytest_deselected(items=leave)
    items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def own_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The tests, and every process they start, keep caches (the store template of src/store_template.py)
    in the session's temporary folder: never in the user's ~/.cache, and made fresh by each session."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.getbasetemp() / "cache")


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def compose_cfg(tracking_uri: str) -> Callable[..., DictConfig]:
    """Compose conf/ exactly as `python -m src.train` would, with the test's own store."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=[f"tracking.uri={tracking_uri}", *overrides])

    return _compose


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    module: str = "src.train",
    cwd: Path = PROJECT_ROOT,
) -> subprocess.CompletedProcess:
    """`python -m src.train ...` (or another module) in a fresh process, from the project root unless
    `cwd` says otherwise, output captured."""
    environment = {**os.environ, **(env or {})}
    environment.pop("MLFLOW_RUN_ID", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(root: Path, port: int | None = None) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 over a SQLite store in `root`; its URL while the block runs.
    A new store starts as the migrated empty schema (src/store_template.py), to which the server adds
    its Default experiment: the server's own migrations took 4 s of each test. Tracking only: MLflow's
    job execution, on by default, is off (README: the tracking server)."""
    database = root / "mlflow.db"
    if not database.exists():
        shutil.copyfile(ensure_template(), database)
    port = port or free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{database}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(root / "server.log").open("a"),
        start_new_session=True,
        # MLflow 3's job runner (GenAI scorers; 8 more processes, each importing MLflow) is of no use to tracking.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.25)
        else:
            pytest.fail("mlflow server did not answer /health within 60 s")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)  # the server and its workers, at once: a server that dies
        process.wait(timeout=30)
