"""One experiment: data → backend.fit → evaluate → track. No framework is imported here.

`run` does it all in one process (`python -m src.train`); the DVC stages in pipelines/ call the
same phases separately (`prepare`, `train`, `report`). Everything that can be checked before
training is checked before the MLflow run starts, so a bad config or an unreachable server never
leaves a run behind. What differs between regression, classification and language modelling is the
dataset's task module (src/tasks/); this file stays the same for all of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from src import data, plots, tasks
from src.config import FINAL_LOSS_METRICS, Config, require, settings_from
from src.data.base import Splits
from src.evaluation import Evaluation, evaluate
from src.frameworks import FitResult, ModelSpec, backend_class
from src.frameworks.base import EpochResult, cpu_threads
from src.predictor import Predictor
from src.errors import UserError
from src.sweep import SweepContext
from src.tracking import TrackedRun, check_reachable, flatten, record_failed_run, redact, resolve_uri

log = logging.getLogger(__name__)

INPUT_EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class Outcome:
    """What a finished experiment reports back to its entry point."""

    run_id: str
    metrics: dict[str, float]
    evaluation: Evaluation
    model_uri: str | None

    def objective(self, name: str) -> float:
        """`val_loss` means the best epoch's (the weights kept); other names are final metrics."""
        return self.metrics[FINAL_LOSS_METRICS.get(name, name)]


@dataclass(frozen=True)
class Trained:
    predictor: Predictor
    fit: FitResult  # losses in original units
    metrics: dict[str, float]


def check_fits_data(settings: Config, splits: Splits) -> None:
    require(settings.trainer.batch_size <= len(splits.train), "trainer.batch_size",
            f"must be <= the {len(splits.train)} training sequences of dataset {splits.info.name}",
            settings.trainer.batch_size)


def check_objective(objective: str, splits: Splits) -> None:
    """The objective must be a metric this dataset's task reports."""
    task = tasks.get(splits.info.task)
    allowed = [*FINAL_LOSS_METRICS, *(f"test_{metric}" for metric in task.METRICS)]
    require(objective in allowed, "objective",
            f"must be one of {', '.join(allowed)} for dataset {splits.info.name} (task {task.NAME})", objective)


def run_tags(settings: Config, splits: Splits, overrides: list[str] | None = None) -> dict[str, str]:
    return {"framework": settings.framework.name.value, "dataset": splits.info.name,
            "cell": settings.model.cell.value, "task": splits.info.task, "overrides": " ".join(overrides or []),
            "data_digest": splits.digest()}


def run(cfg: DictConfig, overrides: list[str] | None = None, sweep: SweepContext | None = None) -> Outcome:
    """Run the composed config end to end and return what it measured.

    As a job of a sweep, the run is a child of the sweep's parent run; a job whose config fails its
    checks is recorded as a FAILED child so the sweep shows it.
    """
    try:
        settings = settings_from(cfg)
        uri = resolve_uri(settings.tracking.uri)
        check_reachable(uri)
        splits = data.generate(settings.dataset, settings.trainer.seed)
        check_fits_data(settings, splits)
        check_objective(settings.objective, splits)
        # Importing the framework and checking the device before the run starts.
        backend_class(settings.framework.name.value).check_device(settings.framework.device)
    except Exception as error:
        if sweep is not None:
            record_failed_run(resolve_uri(OmegaConf.select(cfg, "tracking.uri")), str(cfg.tracking.experiment),
                              {"sweep_id": sweep.sweep_id, "mlflow.parentRunId": sweep.parent_run_id,
                               "overrides": " ".join(overrides or [])}, error)
        raise
    tags = run_tags(settings, splits, overrides)
    if sweep is not None:
        tags["sweep_id"] = sweep.sweep_id
    with TrackedRun(uri, settings.tracking.experiment, settings.tracking.run_name, tags,
                    parent_run_id=sweep.parent_run_id if sweep else None) as tracked:
        tracked.log_params(run_params(cfg, splits))
        tracked.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        tracked.log_datasets(splits)
        trained = train(settings, splits, tracked)
        evaluation, metrics = report(trained.predictor, splits, tracked, settings.tracking.log_model)
        outcome = Outcome(tracked.run_id, {**trained.metrics, **metrics}, evaluation, tracked.model_uri)
    return outcome


def train(settings: Config, splits: Splits, tracked: TrackedRun) -> Trained:
    """Fit the configured network, logging every epoch and the loss curve: the task's loss, for
    regression the MSE in original units."""
    task = tasks.get(splits.info.task)
    # Datasets whose inputs must not be scaled (token ids) have no `standardize` key.
    standardizer = task.standardizer(splits, getattr(settings.dataset, "standardize", False))
    spec = ModelSpec.from_config(settings.model, *task.network_sizes(splits), task=task.NAME)
    backend = backend_class(settings.framework.name.value).build(spec, settings.trainer.seed,
                                                                 settings.framework.device)
    tracked.set_tags({"device": backend.device})
    scale = standardizer.loss_scale

    def in_original_units(result: EpochResult) -> EpochResult:
        return EpochResult(result.epoch, result.train_loss * scale, result.val_loss * scale, result.seconds)

    log.info("training %s %s on %s (%d train / %d val / %d test sequences) on %s", backend.name, spec.cell,
             splits.info.name, len(splits.train), len(splits.val), len(splits.test), backend.device)
    # Without a validation split (dataset.val_fraction=0) early stopping and val_loss watch the training set.
    watched = splits.val if len(splits.val) else splits.train
    with cpu_threads(settings.framework.threads):
        fit = backend.fit(standardizer.transform(splits.train), standardizer.transform(watched), settings.trainer,
                          lambda result: tracked.log_epoch(in_original_units(result)))
    fit = FitResult([in_original_units(result) for result in fit.history], fit.best_epoch, fit.stopped_early)
    metrics = {
        "best_epoch": float(fit.best_epoch),
        "epochs_trained": float(len(fit.history)),
        "train_seconds": float(sum(result.seconds for result in fit.history)),
        "best_train_loss": fit.best.train_loss,
        "best_val_loss": fit.best.val_loss,
    }
    tracked.log_metrics(metrics)
    tracked.log_figure(plots.loss_curve(fit, plot_title(tracked, splits), task.LOSS_LABEL), "plots/loss_curve.png")
    return Trained(Predictor(backend, standardizer, list(splits.info.classes)), fit, metrics)


def report(predictor: Predictor, splits: Splits, tracked: TrackedRun,
           log_model: bool = True) -> tuple[Evaluation, dict[str, float]]:
    """Evaluate against the baselines and log metrics, predictions, the table, the task's plots and
    artifacts, and the model."""
    task = tasks.get(splits.info.task)
    evaluation = evaluate(splits, predictor.predict(splits.test.x))
    metrics = {}
    if len(splits.val):
        val = task.metrics(splits.val.y, predictor.predict(splits.val.x))
        # A language model's val "loss" is the per-epoch curve's name: its final value is best_val_loss.
        metrics.update({f"val_{name}": value for name, value in val.items() if f"val_{name}" not in FINAL_LOSS_METRICS})
    metrics.update(evaluation.flat())
    tracked.log_metrics(metrics)
    tracked.log_text(predictions_csv(evaluation), "predictions.csv")
    tracked.log_text(evaluation.table() + "\n", "results.txt")
    for path, figure in task.figures(evaluation, plot_title(tracked, splits)).items():
        tracked.log_figure(figure, path)
    for path, text in task.artifacts(predictor, splits).items():
        tracked.log_text(text, path)
    if log_model:
        tracked.log_model(predictor, splits.test.x[:INPUT_EXAMPLE_ROWS])
    return evaluation, metrics


def run_params(cfg: DictConfig | dict, splits: Splits) -> dict[str, object]:
    """The resolved config with dotted keys (credentials removed), plus the data's sizes."""
    tree = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if isinstance(cfg, DictConfig) else cfg
    params = flatten(tree)  # type: ignore[arg-type]
    if params.get("tracking.uri"):
        params["tracking.uri"] = redact(str(params["tracking.uri"]))
    params.update({f"data.num_{name}": len(split) for name, split in splits.items()})
    return params


def predictions_csv(evaluation: Evaluation) -> str:
    """The truth and the predictions per test sample, as the task writes them."""
    return tasks.get(evaluation.task).predictions_csv(evaluation)


def plot_title(tracked: TrackedRun, splits: Splits) -> str:
    return f"{splits.info.name}: {tracked.tags.get('framework', '')} {tracked.tags.get('cell', '')}"
