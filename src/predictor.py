"""A trained network with what it needs to mean something: its standardisation and its task's classes.

`predict` gives what a prediction means for the task (src/tasks/): values in the data's original
units, class probabilities, or a language model's next-token probabilities. This is what gets
saved, logged to MLflow and loaded back (by the pyfunc model, the DVC evaluate stage, `src.sample`
and anyone else), whatever framework trained it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src import tasks
from src.data.scaling import Standardizer
from src.errors import UserError, reading
from src.frameworks import FRAMEWORKS, backend_class
from src.frameworks.base import Backend
from src.resume import pid_gone
from src.tasks.task import Task

MANIFEST_FILE = "rnnlab.json"
# Test inputs a logged model carries as its input example (and its signature is inferred from).
INPUT_EXAMPLE_ROWS = 5


@dataclass
class Predictor:
    backend: Backend
    standardizer: Standardizer
    task: Task
    # The class names, or a language model's vocabulary (token id = index); empty for regression.
    classes: list[str] = field(default_factory=list)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != len(self.standardizer.x_mean):
            raise UserError(f"inputs must be shaped (samples, steps, {len(self.standardizer.x_mean)}), got {x.shape}")
        outputs = self.backend.predict(self.standardizer.transform_x(x))
        return self.task.predictions(outputs, self.standardizer)

    def save(self, directory: Path) -> None:
        self.backend.save(directory)
        manifest = {
            "framework": self.backend.name,
            "task": self.task.name,
            "standardizer": self.standardizer.to_dict(),
            "classes": list(self.classes),
        }
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> Predictor:
        path = Path(directory) / MANIFEST_FILE
        with reading(path):
            manifest = json.loads(path.read_text())
            if "task" not in manifest:
                raise UserError(f"model file from an earlier rnnlab: {path} does not name its task; retrain the model")
            framework, task = manifest["framework"], tasks.get(manifest["task"])
            if framework not in FRAMEWORKS:
                raise KeyError(f"framework {framework!r}")
            standardizer = Standardizer.from_dict(manifest["standardizer"])
            classes = [str(name) for name in manifest.get("classes", [])]
        return cls(backend_class(framework).load(Path(directory), device), standardizer, task, classes)


@dataclass(frozen=True)
class SavedPredictor:
    """A predictor saved to a folder (`Predictor.save`), with what logging it as an MLflow model needs:
    its framework's pip requirements and its outputs for the input example. A training process hands
    this to the run's process, which then logs the model without importing the framework (3.6 s of
    CPU for torch, about 10 s for TensorFlow, and their memory)."""

    directory: Path
    task: Task
    classes: list[str]
    requirements: list[str]
    example: np.ndarray
    example_outputs: np.ndarray

    @classmethod
    def of(cls, predictor: Predictor, owner: int, example: np.ndarray) -> SavedPredictor:
        """Save `predictor` into a new folder `predictor` (the logged model's artifact folder) in a new
        temporary folder, which `discard` removes: the process `owner` (the run's) does that."""
        directory = temporary_folder(owner) / "predictor"
        directory.mkdir()
        predictor.save(directory)
        requirements, outputs = predictor.backend.requirements(), predictor.predict(example)
        return cls(directory, predictor.task, list(predictor.classes), requirements, example, outputs)

    def discard(self) -> None:
        """Remove the temporary folder the predictor was saved in."""
        shutil.rmtree(self.directory.parent, ignore_errors=True)


# A saved predictor's temporary folder: rnnlab-trained-<host>-<owner's PID>-<its start time>-<random>.
TEMPORARY_PREFIX = "rnnlab-trained-"
_OWNED = re.compile(rf"{TEMPORARY_PREFIX}(?P<host>.+)-(?P<pid>\d+)-(?P<started>\d+\.\d+)-[^-]+")


def temporary_folder(owner: int) -> Path:
    """A new folder in the temporary folder, named after the process that will remove it, once those
    whose process is gone are removed: a run killed (SIGKILL, an OOM kill) between saving its predictor
    and logging it as its model cannot remove its own, so the next run that saves one does."""
    import psutil

    remove_abandoned_folders()
    started = psutil.Process(owner).create_time()
    return Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{socket.gethostname()}-{owner}-{started:.3f}-"))


def remove_abandoned_folders() -> list[Path]:
    """Remove the saved predictors' folders of this host whose owning process is gone; returns them."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{TEMPORARY_PREFIX}*"):
        named = _OWNED.fullmatch(path.name)
        if named and named["host"] == socket.gethostname() and pid_gone(int(named["pid"]), float(named["started"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
