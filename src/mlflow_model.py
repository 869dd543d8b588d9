"""The MLflow pyfunc model for every framework, logged as "models from code" (nothing pickled).

MLflow runs this file when the model loads; `load_context` reads the saved `Predictor` from the
model's artifacts, so `mlflow.pyfunc.load_model(model_uri).predict(x)` gives the same numbers the
training run reported: values in original units (regression) or class probabilities (classification);
a language model takes text and writes its continuation (src/serving.py says what each takes).
`unwrap_python_model().predictor` reaches the `Predictor` itself, with its classes or vocabulary (a
language model's next-token probabilities at every step come from its `predict`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel, PythonModelContext

ARTIFACT_KEY = "predictor"


class RnnlabModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from src.predictor import Predictor

        self.predictor = Predictor.load(Path(context.artifacts[ARTIFACT_KEY]))

    # A language model's input is a one-column DataFrame of strings: the hint is one that MLflow takes
    # without inferring a schema from it (the logged signature says what each model takes).
    def predict(self, context: PythonModelContext, model_input: np.ndarray, params: dict | None = None) -> Any:
        from src import serving

        return serving.predict(self.predictor, model_input, params)


mlflow.models.set_model(RnnlabModel())
