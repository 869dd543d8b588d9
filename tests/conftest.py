"""Shared fixtures: real Hydra composition from conf/ and a temporary SQLite MLflow store per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src.config import register_configs
from src.paths import CONF_DIR, PROJECT_ROOT

register_configs()

# Small and fast: enough to see every part of the workflow run.
QUICK = ["trainer.epochs=3", "trainer.patience=0", "model.hidden_size=8"]


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


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m src.train ...` in a fresh process, from the project root, output captured."""
    environment = {**os.environ, **(env or {})}
    environment.pop("MLFLOW_RUN_ID", None)
    return subprocess.run([sys.executable, "-m", "src.train", *args], cwd=PROJECT_ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)
