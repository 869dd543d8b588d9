"""The task registry: what a network predicts, how it is scored, and what it is compared against.

The dataset chooses its task (`DatasetInfo.task`); `get` resolves that name once into a `Task`
object (src/tasks/task.py), which is passed down from there. Everything that differs between tasks
lives in the task's class; nothing outside this package branches on a task's name. Adding a task is
one module here with its class, registered in `TASKS`.

Objectives (what a sweep optimises and `objective=` names) derive from the tasks' metrics: the
best epoch's `val_loss` / `train_loss`, or any task's `test_<metric>`, each with its direction.
"""

from __future__ import annotations

import math

from src.errors import UserError
from src.tasks.classification import Classification
from src.tasks.language_model import LanguageModel
from src.tasks.regression import Regression
from src.tasks.task import Direction, Task, rank_metric

TASKS: dict[str, Task] = {task.name: task for task in (Regression(), Classification(), LanguageModel())}

# Per-epoch curves are logged as train_loss/val_loss; their values at the best epoch (the weights
# kept) are the final metrics best_train_loss/best_val_loss, which those objectives name.
FINAL_LOSS_METRICS = {"train_loss": "best_train_loss", "val_loss": "best_val_loss"}


def get(name: str) -> Task:
    """The task called `name`."""
    try:
        return TASKS[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}: must be one of {', '.join(TASKS)}") from None


def objectives(task: Task) -> dict[str, Direction]:
    """The objectives a run of `task` can report, with their directions."""
    return {
        **{name: "minimize" for name in FINAL_LOSS_METRICS},
        **{f"test_{metric}": direction for metric, direction in task.metrics.items()},
    }


# Every objective of every task. A metric name shared by two tasks must mean the same direction.
OBJECTIVE_DIRECTIONS: dict[str, Direction] = {
    name: direction for task in TASKS.values() for name, direction in objectives(task).items()
}
OBJECTIVES = tuple(OBJECTIVE_DIRECTIONS)


def objective_direction(objective: str) -> Direction:
    """ "minimize" or "maximize"; a metric not named by any task is minimised."""
    return OBJECTIVE_DIRECTIONS.get(objective, "minimize")


def worst_value(objective: str) -> float:
    """What a failed sweep job returns: the value no sweeper following the direction would pick."""
    return math.inf if objective_direction(objective) == "minimize" else -math.inf


def headline_metrics() -> dict[str, bool]:
    """Each task's headline test metric (`test_mse`, `test_accuracy`, `test_bpc`) → higher is better."""
    return {f"test_{metric}": higher for metric, higher in map(rank_metric, TASKS.values())}


__all__ = [
    "FINAL_LOSS_METRICS",
    "OBJECTIVES",
    "TASKS",
    "Task",
    "get",
    "headline_metrics",
    "objective_direction",
    "objectives",
    "worst_value",
]
