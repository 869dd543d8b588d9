"""One experiment: data → backend.fit → evaluate → track. No framework is imported here.

Everything that can be checked before training is checked before the MLflow run starts, so a bad
config or an unreachable server never leaves a run behind.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from src import data, plots
from src.config import Config, require, settings_from
from src.data.base import Splits
from src.data.scaling import Standardizer
from src.evaluation import Evaluation, evaluate, regression_metrics
from src.frameworks import FitResult, ModelSpec, backend_class
from src.frameworks.base import EpochResult
from src.predictor import Predictor
from src.tracking import TrackedRun, check_reachable, flatten, redact, resolve_uri

log = logging.getLogger(__name__)

INPUT_EXAMPLE_ROWS = 5
# Per-epoch curves are logged as train_loss/val_loss; their values at the best epoch get own names.
FINAL_LOSS_METRICS = {"train_loss": "best_train_loss", "val_loss": "best_val_loss"}


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


def check_fits_data(settings: Config, splits: Splits) -> None:
    require(settings.trainer.batch_size <= len(splits.train), "trainer.batch_size",
            f"must be <= the {len(splits.train)} training sequences of dataset {splits.info.name}",
            settings.trainer.batch_size)


def run(cfg: DictConfig, overrides: list[str] | None = None) -> Outcome:
    """Run the composed config end to end and return what it measured."""
    settings = settings_from(cfg)
    uri = resolve_uri(settings.tracking.uri)
    check_reachable(uri)
    splits = data.generate(settings.dataset, settings.trainer.seed)
    check_fits_data(settings, splits)
    framework = settings.framework.name.value
    backend_type = backend_class(framework)
    standardizer = (Standardizer.fit(splits.train) if settings.dataset.standardize
                    else Standardizer.identity(splits.num_features, splits.num_outputs))

    tags = {"framework": framework, "dataset": splits.info.name, "cell": settings.model.cell.value,
            "task": splits.info.task, "overrides": " ".join(overrides or []), "data_digest": splits.digest()}
    with TrackedRun(uri, settings.tracking.experiment, settings.tracking.run_name, tags) as tracked:
        tracked.log_params(run_params(cfg, splits))
        tracked.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        tracked.log_datasets(splits)

        spec = ModelSpec.from_config(settings.model, splits.num_features, splits.num_outputs)
        backend = backend_type.build(spec, settings.trainer.seed, settings.framework.device)
        tracked.set_tags({"device": backend.device})
        to_original_units = standardizer.loss_scale

        def on_epoch(result: EpochResult) -> None:
            tracked.log_epoch(EpochResult(result.epoch, result.train_loss * to_original_units,
                                          result.val_loss * to_original_units, result.seconds))

        log.info("training %s %s on %s (%d train / %d val / %d test sequences) on %s", framework,
                 spec.cell, splits.info.name, len(splits.train), len(splits.val), len(splits.test), backend.device)
        fit = backend.fit(standardizer.transform(splits.train), standardizer.transform(splits.val),
                          settings.trainer, on_epoch)

        predictor = Predictor(backend, standardizer)
        evaluation = evaluate(splits, predictor.predict(splits.test.x))
        metrics = final_metrics(fit, to_original_units, evaluation, splits, predictor)
        tracked.log_metrics(metrics)
        log_report_artifacts(tracked, fit, evaluation, splits, to_original_units)
        model_uri = None
        if settings.tracking.log_model:
            model_uri = tracked.log_model(predictor, splits.test.x[:INPUT_EXAMPLE_ROWS])
        outcome = Outcome(tracked.run_id, metrics, evaluation, model_uri)
    return outcome


def run_params(cfg: DictConfig, splits: Splits) -> dict[str, object]:
    """The resolved config with dotted keys (credentials removed), plus the data's sizes."""
    params = flatten(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))  # type: ignore[arg-type]
    if params.get("tracking.uri"):
        params["tracking.uri"] = redact(str(params["tracking.uri"]))
    params.update({f"data.num_{name}": len(split) for name, split in splits.items()})
    return params


def final_metrics(fit: FitResult, to_original_units: float, evaluation: Evaluation, splits: Splits,
                  predictor: Predictor) -> dict[str, float]:
    best = fit.best
    val = regression_metrics(splits.val.y, predictor.predict(splits.val.x))
    metrics = {
        "best_epoch": float(fit.best_epoch),
        "epochs_trained": float(len(fit.history)),
        "train_seconds": float(sum(result.seconds for result in fit.history)),
        "best_train_loss": best.train_loss * to_original_units,
        "best_val_loss": best.val_loss * to_original_units,
    }
    metrics.update({f"val_{name}": value for name, value in val.items()})
    metrics.update(evaluation.flat())
    return metrics


def log_report_artifacts(tracked: TrackedRun, fit: FitResult, evaluation: Evaluation, splits: Splits,
                         to_original_units: float) -> None:
    """Predictions CSV, the results table, and the two plots."""
    scaled = FitResult([EpochResult(r.epoch, r.train_loss * to_original_units, r.val_loss * to_original_units,
                                    r.seconds) for r in fit.history], fit.best_epoch, fit.stopped_early)
    columns = {"index": np.arange(len(evaluation.truth)), "y_true": evaluation.truth[:, 0]}
    columns.update({f"y_pred_{name}": values[:, 0] for name, values in evaluation.predictions.items()})
    buffer = io.StringIO()
    pd.DataFrame(columns).to_csv(buffer, index=False, float_format="%.9g")
    tracked.log_text(buffer.getvalue(), "predictions.csv")
    tracked.log_text(evaluation.table() + "\n", "results.txt")
    title = f"{splits.info.name}: {tracked.tags['framework']} {tracked.tags['cell']}"
    tracked.log_figure(plots.loss_curve(scaled, title), "plots/loss_curve.png")
    tracked.log_figure(plots.predictions_vs_truth(evaluation.truth, evaluation.predictions, title),
                       "plots/predictions_vs_truth.png")
