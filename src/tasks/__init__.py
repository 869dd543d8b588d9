"""Task kinds: what a network predicts, how it is scored, and what it is compared against.

The dataset chooses its task (`DatasetInfo.task`). Each task is one module here, and everything that
differs between tasks lives in that module, under the same names:

  NAME, METRICS (in table order), RANK_BY (metric, higher is better), BASELINES, LOSS_LABEL
  standardizer(splits, standardize)   what gets standardised (fitted on the training split)
  network_sizes(splits)               (num_features, num_outputs) of the network
  predictions(outputs, standardizer)  the network's raw outputs → what a prediction means
  metrics(truth, predictions)         metric name → value
  baselines(splits, x)                baseline name → predictions for x, fitted on the training split
  predictions_csv(evaluation)         the per-sample predictions artifact
  figures(evaluation, title)          artifact path → figure, beyond the loss curve every task has
  artifacts(predictor, splits)        artifact path → text (a language model's sample)

What the network itself does per task (the head, the loss) is `ModelSpec`'s business, in
src/frameworks/base.py; nothing else asks which task it is running.
"""

from __future__ import annotations

from types import ModuleType

from src.errors import UserError
from src.tasks import classification, language_model, regression

TASKS: dict[str, ModuleType] = {module.NAME: module for module in (regression, classification, language_model)}


def get(name: str) -> ModuleType:
    """The module of task `name`."""
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}: must be one of {', '.join(TASKS)}") from None


__all__ = ["TASKS", "get"]
