"""What the stages share: where files go, reading params.yaml, and clean one-line failures."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from src.config import Config
from src.errors import UserError, exit_interrupted, reading, stop_on_sigterm
from src.paths import PROJECT_ROOT
from src.settings import settings_from_params

PARAMS_FILE = PROJECT_ROOT / "params.yaml"
DATA_FILE = PROJECT_ROOT / "data" / "splits.npz"
# What DVC tells a stage of `dvc exp run` (workspace, --temp or --queue), as tags on its MLflow run.
DVC_EXPERIMENT_TAGS = {"DVC_EXP_NAME": "dvc.exp_name", "DVC_EXP_BASELINE_REV": "dvc.baseline_rev"}


def model_dir(framework: str) -> Path:
    return PROJECT_ROOT / "models" / framework


def reports_dir(framework: str) -> Path:
    return PROJECT_ROOT / "reports" / framework


def metrics_file(framework: str) -> Path:
    """Numbers only, so that `dvc metrics show` and `dvc exp show` compare like with like."""
    return PROJECT_ROOT / "metrics" / f"{framework}.json"


def run_file(framework: str) -> Path:
    """The MLflow run behind a framework's model and metrics (`run_id`, `experiment`): committed to git
    with the metrics, so every commit and DVC experiment names its run."""
    return reports_dir(framework) / "mlflow_run.json"


def dvc_experiment_tags() -> dict[str, str]:
    """The DVC experiment's name and baseline commit when `dvc exp run` runs the stage; none under `dvc repro`."""
    return {tag: os.environ[variable] for variable, tag in DVC_EXPERIMENT_TAGS.items() if os.environ.get(variable)}


def read_params() -> dict[str, Any]:
    return read_file(PARAMS_FILE, yaml.safe_load, "params file")


def load_settings(framework: str | None = None) -> tuple[Config, dict[str, Any]]:
    """params.yaml checked against the schemas; a stage of the framework matrix sets its framework."""
    params = read_params()
    if framework is not None:
        params.setdefault("framework", {})["name"] = framework
    return settings_from_params(params), params


def write_json(path: Path, values: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    return read_file(path, json.loads, "file")


def read_file(path: Path, parse: Callable[[str], Any], what: str) -> Any:
    """Parse a file, or fail in one line that names it: missing, or corrupt and why."""
    with reading(path, what):
        return parse(path.read_text())


def stage(function: Callable[..., None]) -> Callable[..., None]:
    """Run a stage with logging on, turning a UserError into one line on stderr and exit 2."""

    @functools.wraps(function)
    def wrapper(*args: Any) -> None:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
        stop_on_sigterm()
        try:
            function(*args)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as interruption:
            exit_interrupted(interruption, "; run the stage again: dvc repro")

    return wrapper
