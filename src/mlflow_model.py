"""The MLflow pyfunc model for every framework, logged as "models from code" (nothing pickled).

MLflow runs this file when the model loads; `load_context` reads the saved `Predictor` from the
model's artifacts, so `mlflow.pyfunc.load_model(model_uri).predict(x)` gives the same numbers the
training run reported: values in original units (regression), class probabilities (classification)
or next-token probabilities at every step (language model). `unwrap_python_model().predictor` reaches
the `Predictor` itself, with its classes or vocabulary (what `src.sample` uses).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel, PythonModelContext

ARTIFACT_KEY = "predictor"


class RnnlabModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from src.predictor import Predictor

        self.predictor = Predictor.load(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(self, context: PythonModelContext, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        return self.predictor.predict(np.asarray(model_input, dtype=np.float32))


mlflow.models.set_model(RnnlabModel())
