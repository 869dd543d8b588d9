"""A trained network with what it needs to mean something: its standardisation and its task's classes.

`predict` gives what a prediction means for the task (src/tasks/): values in the data's original
units, class probabilities, or a language model's next-token probabilities. This is what gets
saved, logged to MLflow and loaded back (by the pyfunc model, the DVC evaluate stage, `src.sample`
and anyone else), whatever framework trained it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src import tasks
from src.data.scaling import Standardizer
from src.errors import UserError, reading
from src.frameworks import FRAMEWORKS, backend_class
from src.frameworks.base import Backend
from src.tasks.task import Task

MANIFEST_FILE = "rnnlab.json"


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
