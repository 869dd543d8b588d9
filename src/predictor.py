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
from src.errors import UserError
from src.frameworks import Backend, backend_class

MANIFEST_FILE = "rnnlab.json"


@dataclass
class Predictor:
    backend: Backend
    standardizer: Standardizer
    # The class names, or a language model's vocabulary (token id = index); empty for regression.
    classes: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.backend.spec.task

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != len(self.standardizer.x_mean):
            raise UserError(f"inputs must be shaped (samples, steps, {len(self.standardizer.x_mean)}), "
                            f"got {x.shape}")
        outputs = self.backend.predict(self.standardizer.transform_x(x))
        return tasks.get(self.task).predictions(outputs, self.standardizer)

    def save(self, directory: Path) -> None:
        self.backend.save(directory)
        manifest = {"framework": self.backend.name, "standardizer": self.standardizer.to_dict(),
                    "classes": list(self.classes)}
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))

    @classmethod
    def load(cls, directory: Path, device: str = "auto") -> "Predictor":
        path = Path(directory) / MANIFEST_FILE
        try:
            manifest = json.loads(path.read_text())
            framework = manifest["framework"]
            standardizer = Standardizer.from_dict(manifest["standardizer"])
            classes = [str(name) for name in manifest.get("classes", [])]
        except FileNotFoundError:
            raise UserError(f"model file missing: {path}") from None
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise UserError(f"model file corrupt: {path} ({type(error).__name__}: {error})") from None
        return cls(backend_class(framework).load(Path(directory), device), standardizer, classes)
