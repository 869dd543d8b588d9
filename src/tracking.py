"""The MLflow run: where it is stored, what it records, and how it ends.

A `TrackedRun` ends FINISHED when its block succeeds, FAILED on an exception (the reason in the
`error` tag) and KILLED on Ctrl-C; metrics already logged always stay.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import RunStatus

from src.data.base import Splits
from src.errors import UserError
from src.frameworks.base import EpochResult
from src.paths import DEFAULT_TRACKING_DB, PROJECT_ROOT

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from src.predictor import Predictor

log = logging.getLogger(__name__)

# MLflow's artifact progress bars are noise in logs; a user may still turn them on.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Asynchronous epoch metrics go to the store in batches each second; without a buffering interval
# MLflow's logging thread blocks in a 1 s queue wait that end_run then sits through (benchmarks/).
os.environ.setdefault("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "1")

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
REACHABILITY_TIMEOUT_S = 5.0
CREDENTIALS_IN_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^:/@\s]*):([^@\s]+)@")


def resolve_uri(configured: str | None) -> str:
    """`tracking.uri` if set, else $MLFLOW_TRACKING_URI, else the SQLite file at the project root."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_TRACKING_DB}"


def redact(text: str) -> str:
    """Any URL in `text` without its password (user:secret@host → user:***@host): fit for params,
    tags and messages, which are stored and shown in plain text."""
    return CREDENTIALS_IN_URL.sub(r"\1\2:***@", text)


def check_store_exists(uri: str) -> None:
    """Commands that only read runs must not create an empty SQLite store for a mistyped path."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(f"no tracking store at {uri.removeprefix('sqlite:///')} (check --tracking-uri)")


def keep_credentials_off_screen(uri: str) -> None:
    """MLflow prints "View run at <tracking URI>..." when a run ends: not when that URI has a password."""
    if redact(uri) != uri:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def check_reachable(uri: str) -> None:
    """Fail in seconds, before any training, when an HTTP tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    parts = urlsplit(uri)
    netloc = parts.hostname or ""
    netloc = f"[{netloc}]" if ":" in netloc else netloc
    if parts.port:
        netloc += f":{parts.port}"
    request = urllib.request.Request(urlunsplit(parts._replace(netloc=netloc, path=parts.path.rstrip("/") + "/health")))
    if parts.username is not None:  # credentials in the URI: send them as MLflow's client will
        token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=REACHABILITY_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise UserError(f"tracking server {redact(uri)} is unreachable ({reason})") from None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"trainer": {"lr": 0.1}} → {"trainer.lr": 0.1}: the resolved config as MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def ensure_experiment(uri: str, name: str) -> str:
    """Create the store and the experiment once, before parallel jobs would race to do it.

    With a SQLite store the experiment's artifacts go to `mlartifacts/` beside the database file, not
    to `./mlruns` of whichever directory the first run happened to start in.
    """
    logging.getLogger("alembic").setLevel(logging.WARNING)
    keep_credentials_off_screen(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment:
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def record_failed_run(uri: str, experiment: str, tags: dict[str, str], error: BaseException) -> str:
    """A FAILED run for a sweep job that could not start, so the sweep's comparison shows it."""
    client = MlflowClient(uri)
    run = client.create_run(ensure_experiment(uri, experiment), tags={
        key: redact(value) for key, value in {**tags, "error": f"{type(error).__name__}: {error}"[:5000]}.items()})
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


def descriptive_name(tags: Mapping[str, str]) -> str:
    """framework-cell-dataset-xxxx: readable in the UI, and unlike MLflow's own random names it
    leaves Python's global `random` state alone (a seeded notebook keeps its stream)."""
    parts = [tags[key] for key in ("framework", "cell", "dataset") if tags.get(key)]
    return "-".join([*parts, uuid.uuid4().hex[:4]])


class TrackedRun:
    """One MLflow run around a `with` block."""

    def __init__(self, uri: str, experiment: str, run_name: str | None, tags: dict[str, str],
                 run_id: str | None = None, parent_run_id: str | None = None) -> None:
        """With `run_id`, continue that run (a later pipeline stage adding to the run it belongs to);
        with `parent_run_id`, start a child of that run (a job of a sweep)."""
        self.uri, self.experiment, self.run_name, self.tags = uri, experiment, run_name, tags
        self.run_id = run_id or ""
        self.parent_run_id = parent_run_id
        self.model_uri: str | None = None

    def __enter__(self) -> "TrackedRun":
        logging.getLogger("alembic").setLevel(logging.WARNING)  # schema migrations of a new store
        keep_credentials_off_screen(self.uri)
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(experiment_id=ensure_experiment(self.uri, self.experiment))
        commit = git_commit()
        tags = {key: redact(str(value)) for key, value in self.tags.items()}
        if commit:
            tags.update({"git_commit": commit, "mlflow.source.git.commit": commit})
        if self.run_id:
            run = mlflow.start_run(run_id=self.run_id)
            mlflow.set_tags(tags)
        else:
            run = mlflow.start_run(run_name=self.run_name or descriptive_name(self.tags), tags=tags,
                                   parent_run_id=self.parent_run_id)
        self.run_id = run.info.run_id
        log.info("MLflow run %s in experiment %r at %s", self.run_id, self.experiment, redact(self.uri))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            status = RunStatus.to_string(RunStatus.FINISHED)
        elif issubclass(kind, KeyboardInterrupt):
            status = RunStatus.to_string(RunStatus.KILLED)
        else:
            status = RunStatus.to_string(RunStatus.FAILED)
            try:
                mlflow.set_tag("error", redact(f"{kind.__name__}: {error}")[:5000])
            except Exception:  # the reason is a courtesy; ending the run matters more
                log.exception("could not record the error on run %s", self.run_id)
        mlflow.end_run(status=status)

    def log_params(self, params: Mapping[str, Any]) -> None:
        mlflow.log_params({key: "None" if value is None else redact(str(value)) for key, value in params.items()})

    def log_epoch(self, result: EpochResult) -> None:
        # Asynchronous: epochs are batched to the store in the background and flushed at end_run.
        mlflow.log_metrics({"train_loss": result.train_loss, "val_loss": result.val_loss,
                            "epoch_seconds": result.seconds}, step=result.epoch, synchronous=False)

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        mlflow.log_metrics(dict(metrics))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        mlflow.set_tags({key: redact(str(value)) for key, value in tags.items()})

    def log_text(self, text: str, path: str) -> None:
        mlflow.log_text(text, path)

    def log_figure(self, figure: "Figure", path: str) -> None:
        mlflow.log_figure(figure, path)

    def log_datasets(self, splits: Splits) -> None:
        """Each split as an MLflow dataset input; its digest is a hash of the arrays' content."""
        contexts = {"train": "training", "val": "validation", "test": "testing"}
        for split_name, split in splits.items():
            if not len(split):
                continue
            dataset = mlflow.data.from_numpy(split.x, targets=split.y, name=f"{splits.info.name}-{split_name}")
            mlflow.log_input(dataset, context=contexts[split_name])

    def log_model(self, predictor: "Predictor", input_example: np.ndarray) -> str:
        """Log the predictor as a pyfunc model; returns (and tags) the URI that loads it."""
        from mlflow.models import infer_signature

        with tempfile.TemporaryDirectory() as scratch:
            directory = Path(scratch) / "predictor"
            directory.mkdir()
            predictor.save(directory)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),
                artifacts={"predictor": str(directory)},
                code_paths=[str(PROJECT_ROOT / "src")],
                signature=infer_signature(input_example, predictor.predict(input_example)),
                input_example=input_example,
                pip_requirements=model_requirements(predictor.backend.requirements()),
            )
        mlflow.set_tag("model_uri", info.model_uri)
        self.model_uri = info.model_uri
        return info.model_uri


def model_requirements(backend_requirements: list[str]) -> list[str]:
    """Pinned requirements for loading a model, given here so MLflow need not infer them (slow)."""
    own = [f"{name}=={version(name)}" for name in ("mlflow", "numpy", "hydra-core", "omegaconf")]
    return own + backend_requirements
