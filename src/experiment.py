"""One experiment: data → backend.fit → evaluate → track. No framework is imported here.

`run` does it all in one process (`python -m src.train`); the DVC stages in pipelines/ call the
same phases separately (`prepare`, `train`, `report`). Everything that can be checked before
training is checked before the MLflow run starts, so a bad config or an unreachable server never
leaves a run behind. What differs between regression, classification and language modelling is the
dataset's task module (src/tasks/); this file stays the same for all of them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from omegaconf import DictConfig, OmegaConf

from src import data, plots, tasks
from src.config import Config
from src.data.base import Splits
from src.errors import TrackingUnavailable, UserError, require
from src.evaluation import Evaluation, evaluate
from src.frameworks import backend_class
from src.frameworks.checkpoint import Checkpoint, EpochResult
from src.frameworks.spec import ModelSpec
from src.frameworks.training import Checkpointing, FitResult
from src.predictor import INPUT_EXAMPLE_ROWS, Predictor, SavedPredictor
from src.resume import RUN_KEY_TAG, UNFINISHED, RunClaim, end_dead_runs, run_key, runs_with_key
from src.settings import settings_from
from src.sweep import SweepContext, ray_node_tags
from src.tasks import FINAL_LOSS_METRICS
from src.tasks.task import Task
from src.training_process import TrainingProcess, can_fork, discard_prestarted, evaluated_splits, fit_here
from src.uris import check_reachable, is_server, redact, resolve_uri, spool_folder, sqlite_path

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from src.tracking import TrackedRun

log = logging.getLogger(__name__)

FEW_SAMPLES = 10  # below this many, a split's metrics are worth a warning


@dataclass(frozen=True)
class Outcome:
    """What a finished experiment reports back to its entry point (`evaluation` is None for a reused run,
    whose logged table is `reused_table`)."""

    run_id: str
    metrics: dict[str, float]
    evaluation: Evaluation | None
    model_uri: str | None
    reused_table: str | None = None

    def table(self) -> str:
        return self.evaluation.table() if self.evaluation is not None else (self.reused_table or "")

    def objective(self, name: str) -> float:
        """`val_loss` means the best epoch's (the weights kept); other names are final metrics."""
        return self.metrics[FINAL_LOSS_METRICS.get(name, name)]


@dataclass(frozen=True)
class Outputs:
    """What `report` evaluates and logs of a trained predictor, in whichever process the predictor is:
    its outputs per split ("test", and "val" where it has rows), the task's artifacts (made when
    asked for), and the predictor saved for the MLflow model (None when no model is logged)."""

    task: Task
    predictions: Mapping[str, np.ndarray]
    artifacts: Callable[[], Mapping[str, str]]
    saved: SavedPredictor | None

    @classmethod
    def here(cls, predictor: Predictor, splits: Splits, save: bool) -> Outputs:
        """Of a predictor in this process; saved in a temporary folder (`discard` removes it) if `save`."""
        predictions = {name: predictor.predict(split.x) for name, split in evaluated_splits(splits)}
        saved = None
        if save:
            saved = SavedPredictor.of(predictor, os.getpid(), splits.test.x[:INPUT_EXAMPLE_ROWS])
        return cls(predictor.task, predictions, lambda: predictor.task.artifacts(predictor, splits), saved)

    def discard(self) -> None:
        if self.saved is not None:
            self.saved.discard()


@dataclass(frozen=True)
class Trained:
    fit: FitResult  # losses in original units
    metrics: dict[str, float]
    predictor: Predictor | None = None  # trained in this process
    arriving: Outputs | None = None  # trained in a training process: what it sends

    def outputs(self, splits: Splits, save: bool) -> Outputs:
        """What `report` takes; `save`: save the predictor for the model (a training process did already)."""
        if self.arriving is not None:
            return self.arriving
        assert self.predictor is not None
        return Outputs.here(self.predictor, splits, save)


def check_fits_data(settings: Config, splits: Splits) -> None:
    require(
        settings.trainer.batch_size <= len(splits.train),
        "trainer.batch_size",
        f"must be <= the {len(splits.train)} training sequences of dataset {splits.info.name}",
        settings.trainer.batch_size,
    )


def check_objective(objective: str, task: Task, splits: Splits) -> None:
    """The objective must be a metric this dataset's task reports: the list in the message is the list checked."""
    allowed = list(tasks.objectives(task))
    require(
        objective in allowed,
        "objective",
        f"must be one of {', '.join(allowed)} for dataset {splits.info.name} (task {task.name})",
        objective,
    )


def check_ready(settings: Config, splits: Splits, check_device: bool = True) -> Task:
    """Every check that needs the data, before any run starts (shared by src.train and the DVC stages);
    returns the dataset's task, resolved once here. Importing the framework is part of the device check,
    which a training process does itself (`start_training`)."""
    task = tasks.get(splits.info.task)
    check_fits_data(settings, splits)
    for name, split in splits.items():
        if name != "train" and 0 < len(split) < FEW_SAMPLES:
            log.warning("the %s split has %d sequences only: its metrics say little", name, len(split))
    if settings.model.dropout > 0 and settings.model.num_layers == 1:
        log.warning(
            "model.dropout=%s does nothing with one layer: it acts between stacked layers", settings.model.dropout
        )
    check_objective(settings.objective, task, splits)
    if check_device:
        backend_class(settings.framework.name.value).check_device(settings.framework.device)
    return task


def start_training(cfg: DictConfig, sweep: SweepContext | None) -> TrainingProcess | None:
    """For a single run with trainer.subprocess: check what needs no MLflow (config, server, data), then
    fork the process that trains (src/training_process.py) before this one imports MLflow. None for a
    sweep's job (its worker is the training process) or where processes cannot fork."""
    try:
        if sweep is not None or not can_fork():
            return None
        settings = settings_from(cfg)
        if not settings.trainer.subprocess:
            return None
        check_reachable(resolve_uri(settings.tracking.uri))
        splits = data.generate(settings.dataset, settings.trainer.seed)
        task = check_ready(settings, splits, check_device=False)
        # A run that may continue or reuse an earlier one learns which before it trains.
        waits = settings.tracking.resume or settings.tracking.skip_finished
        return TrainingProcess.start(settings, splits, task, wait_for_go=waits)
    finally:
        discard_prestarted()  # one prestarted for this command line (src.train) and not used


def run_tags(settings: Config, splits: Splits, overrides: list[str] | None = None) -> dict[str, str]:
    return {
        "framework": settings.framework.name.value,
        "dataset": splits.info.name,
        "cell": settings.model.cell.value,
        "task": splits.info.task,
        "overrides": " ".join(overrides or []),
        "data_digest": splits.digest(),
        **ray_node_tags(),
    }


def run(
    cfg: DictConfig,
    overrides: list[str] | None = None,
    sweep: SweepContext | None = None,
    trainer: TrainingProcess | None = None,
) -> Outcome:
    """Run the composed config end to end and return what it measured.

    As a job of a sweep, the run is a child of the sweep's parent run; a job whose config fails its
    checks is recorded as a FAILED child so the sweep shows it. With `tracking.skip_finished` a config
    that already has a FINISHED run (same run_key) reuses it; with `tracking.resume` an unfinished one
    continues in place from its last checkpoint. With a `trainer` (`start_training`) the network trains
    in that process, whose settings and data were checked before it started.
    """
    from src.registry import register_run_model
    from src.tracking import TrackedRun, ensure_experiment, record_failed_run, server_errors

    claim = None
    try:
        if trainer is None:
            settings = settings_from(cfg)
            uri = resolve_uri(settings.tracking.uri)
            check_reachable(uri)
            splits = data.generate(settings.dataset, settings.trainer.seed)
            task = check_ready(settings, splits)
        else:
            settings, splits, task = trainer.settings, trainer.splits, trainer.task
            uri = resolve_uri(settings.tracking.uri)
        if sweep is not None:
            sweep.check_same_store(uri, settings.tracking.experiment)
        make_checkpoint_folder(uri)
        tags = run_tags(settings, splits, overrides)
        resolved = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
        tags[RUN_KEY_TAG] = run_key(resolved, tags["data_digest"])
        if sweep is not None:
            tags["sweep_id"] = sweep.sweep_id
        if trainer is not None:
            import_store(uri)  # while the training process builds its network
            trainer.wait_ready()  # its framework and device work: only now may a store or a run be made
        with server_errors(uri):
            experiment_id = ensure_experiment(uri, settings.tracking.experiment)
            if settings.tracking.skip_finished:
                reused = reuse_finished(uri, experiment_id, tags[RUN_KEY_TAG], sweep, settings.tracking.log_model)
                if reused is not None:
                    return reused
            if settings.tracking.resume:
                claim = claim_unfinished(uri, experiment_id, tags[RUN_KEY_TAG])
    except Exception as error:
        if sweep is not None:  # the sweep shows the job, FAILED with the reason
            record_failed_run(  # beside the parent: the job's own store or experiment may be what failed
                sweep.tracking_uri or resolve_uri(OmegaConf.select(cfg, "tracking.uri")),
                sweep.experiment or str(cfg.tracking.experiment),
                {
                    "sweep_id": sweep.sweep_id,
                    "mlflow.parentRunId": sweep.parent_run_id,
                    "overrides": " ".join(overrides or []),
                },
                error,
            )
        raise
    if claim is None:
        log.info("starting a new run (run_key %s)", tags[RUN_KEY_TAG])
    checkpointing: Checkpointing | None = None
    try:
        with TrackedRun(
            uri,
            settings.tracking.experiment,
            settings.tracking.run_name,
            tags,
            run_id=claim.run_id if claim else None,
            parent_run_id=sweep.parent_run_id if sweep else None,
        ) as tracked:
            if claim is None:  # a new run: nobody else knows its id yet
                claim = Claim(
                    tracked.run_id,
                    RunClaim(checkpoint_path(uri, tracked.run_id).with_suffix(".lock")),
                    None,
                    resuming=False,
                )
                claim.lock.acquire()
            if not claim.resuming or not tracked.has_tag(SETUP_LOGGED_TAG):
                tracked.log_params(run_params(cfg, splits), resumed=claim.resuming)
                tracked.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
                tracked.log_datasets(splits)
                tracked.set_tags({SETUP_LOGGED_TAG: "true"})  # all three are in: a resume need not log them again
            if claim.resuming:
                tracked.read_logged_steps()
            checkpointing = Checkpointing(
                checkpoint_path(uri, tracked.run_id), settings.trainer.checkpoint_every, claim.checkpoint
            )
            tracked.checkpoint = checkpointing.path if settings.trainer.checkpoint_every else None
            trained = train(settings, task, splits, tracked, checkpointing, trainer)
            outputs = trained.outputs(splits, settings.tracking.log_model)
            try:
                evaluation, metrics = report(outputs, splits, tracked)
            finally:
                outputs.discard()
            outcome = Outcome(tracked.run_id, {**trained.metrics, **metrics}, evaluation, tracked.model_uri)
    except TrackingUnavailable as error:
        if claim is None:  # before the run existed: the command runs again as it is
            raise
        # The run exists, left RUNNING (its end could not be written either): the resume ends it. During
        # training, evaluation, or as the run ended (the last epochs' writes), also where the state is.
        state = saved_state(checkpointing) if checkpointing is not None else ""
        raise TrackingUnavailable(f"{error}; {state}{resume_hint(overrides, sweep)}", error.runs_writable) from error
    finally:
        if claim is not None:
            claim.release()
    if settings.tracking.registered_model and sweep is None:  # a sweep registers only its best job's
        register_run_model(uri, outcome.run_id, settings.tracking.registered_model)
    return outcome


def import_store(uri: str) -> None:
    """Import what opening this store needs (SQLAlchemy and MLflow's schema for a SQLite or database
    store, about 1 s) without opening it, so that nothing is created before the checks have passed."""
    if not is_server(uri):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def download_checkpoint(client: MlflowClient, run_id: str, path: Path) -> Checkpoint | None:
    """A server's run keeps its last checkpoint as the artifact checkpoint/<run id>.npz; None without one."""
    try:
        names = {item.path for item in client.list_artifacts(run_id, "checkpoint")}
    except Exception:  # no such folder, or an artifact store without listing
        return None
    name = f"checkpoint/{path.name}"
    if name not in names:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    downloaded = Path(client.download_artifacts(run_id, name, str(path.parent)))
    downloaded.replace(path)
    return Checkpoint.load(path)


def reuse_finished(
    uri: str, experiment_id: str, key: str, sweep: SweepContext | None, needs_model: bool = False
) -> Outcome | None:
    """The newest FINISHED run with this key (with a logged model, when one is asked for), as this job's
    outcome; a sweep's parent counts it."""
    from mlflow import MlflowClient

    from src.leaderboard import REUSED_TAG_PREFIX

    client = MlflowClient(uri)
    finished = [
        run
        for run in runs_with_key(client, experiment_id, key, ["FINISHED"])
        if not needs_model or "model_uri" in run.data.tags
    ]
    if not finished:
        log.info("no FINISHED run with run_key %s: training", key)
        return None
    run = finished[0]
    log.info("run_key %s already has the FINISHED run %s: reusing it, training nothing", key, run.info.run_id)
    if sweep is not None:
        client.set_tag(sweep.parent_run_id, f"{REUSED_TAG_PREFIX}{run.info.run_id}", sweep.sweep_id)
    return Outcome(
        run.info.run_id,
        dict(run.data.metrics),
        None,
        run.data.tags.get("model_uri"),
        reused_table=read_results_table(client, run.info.run_id),
    )


def read_results_table(client: MlflowClient, run_id: str) -> str:
    """The results table the run logged, or a note where it has none."""
    try:
        with tempfile.TemporaryDirectory() as scratch:
            return Path(client.download_artifacts(run_id, "results.txt", scratch)).read_text().rstrip("\n")
    except Exception:
        return f"(run {run_id} logged no results table)"


SETUP_LOGGED_TAG = "setup_logged"


def make_checkpoint_folder(uri: str) -> None:
    """The folder for checkpoints and run locks, made before any run exists, so a failure is one line."""
    folder = checkpoint_path(uri, "run").parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create the checkpoint folder {folder} ({error.strerror}): it holds the runs' "
            f"checkpoints and locks; make it a writable folder (for a server: set RNNLAB_SPOOL_DIR)"
        ) from None


def resume_hint(overrides: list[str] | None, sweep: SweepContext | None) -> str:
    """How to go on: a single run resumes by itself; a job's resume is its sweep's rerun, which also runs
    the jobs that had not started (the job's own overrides alone would resume this job only)."""
    if sweep is not None:
        return (
            "the sweep stopped: run it again with tracking.skip_finished=true tracking.resume=true "
            "(its finished jobs are reused, this one resumes, the others run)"
        )
    return f"resume with: python -m src.train {redact(' '.join(overrides or []))} tracking.resume=true".rstrip()


def saved_state(checkpointing: Checkpointing) -> str:
    """Where the training state is, for the message of a run the server cut off."""
    if checkpointing.path is not None and checkpointing.path.is_file():
        return f"training state saved at {checkpointing.path}; "
    return "no checkpoint was written (trainer.checkpoint_every=0 or no epoch finished); "


def checkpoint_path(uri: str, run_id: str) -> Path:
    """Beside a SQLite store (`checkpoints/<run id>.npz` next to the .db file); for a server in the
    local spool folder ($RNNLAB_SPOOL_DIR, default checkpoints/spool/ in the project), uploaded to the
    run as an artifact when it ends."""
    database = sqlite_path(uri)
    folder = database.parent / "checkpoints" if database else spool_folder()
    return folder / f"{run_id}.npz"


@dataclass
class Claim:
    """The run this process owns (its lock held), and when it resumes one, the checkpoint to continue from."""

    run_id: str
    lock: RunClaim
    checkpoint: Checkpoint | None
    resuming: bool = True

    def release(self) -> None:
        self.lock.release()


def claim_unfinished(uri: str, experiment_id: str, key: str) -> Claim | None:
    """End dead runs of this store KILLED, then take the newest unfinished run with this key that no
    other process owns. Its checkpoint, if any, is where training continues."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    for dead in end_dead_runs(client, [experiment_id]):
        log.warning("run %s was RUNNING but its process is gone: ended KILLED", dead.info.run_id)
    for candidate in runs_with_key(client, experiment_id, key, UNFINISHED):
        run_id = candidate.info.run_id
        path = checkpoint_path(uri, run_id)
        lock = RunClaim(path.with_suffix(".lock"))
        if not lock.acquire():
            continue
        try:
            resumed = Checkpoint.load(path) if path.is_file() else download_checkpoint(client, run_id, path)
        except UserError as error:  # damaged on disk: the run is deterministic, so start it over
            log.warning("%s: resuming run %s from the start instead", error, run_id)
            path.unlink(missing_ok=True)
            resumed = None
        if resumed is None:
            log.info("resuming run %s (%s) from the start: it has no checkpoint", run_id, candidate.info.status)
        else:
            log.info(
                "resuming run %s (%s) from its checkpoint at epoch %d", run_id, candidate.info.status, resumed.epoch
            )
        return Claim(run_id, lock, resumed)
    log.info("no unfinished run with run_key %s to resume", key)
    return None


def train(
    settings: Config,
    task: Task,
    splits: Splits,
    tracked: TrackedRun,
    checkpointing: Checkpointing | None = None,
    trainer: TrainingProcess | None = None,
) -> Trained:
    """Fit the configured network (here, or in `trainer`'s process), logging every epoch and the loss
    curve: the task's loss, for regression the MSE in original units."""
    standardizer = task.standardizer(splits, settings.dataset.standardize)
    if trainer is None:
        spec = ModelSpec.from_config(settings.model, *task.network_sizes(splits), task.head)
        backend = backend_class(settings.framework.name.value).build(
            spec, settings.trainer.seed, settings.framework.device, settings.model.init.value
        )
        device = backend.device
    else:
        device = trainer.wait_ready()
    tracked.set_tags({"device": device})
    scale = standardizer.loss_scale

    def in_original_units(result: EpochResult) -> EpochResult:
        return EpochResult(result.epoch, result.train_loss * scale, result.val_loss * scale, result.seconds)

    log.info(
        "training %s %s on %s (%d train / %d val / %d test sequences) on %s%s",
        settings.framework.name.value,
        settings.model.cell.value,
        splits.info.name,
        len(splits.train),
        len(splits.val),
        len(splits.test),
        device,
        (f" in process {trainer.pid}" + (" (started before the config was composed)" if trainer.prestarted else ""))
        if trainer
        else "",
    )

    def on_epoch(result: EpochResult, ended_at: float | None = None) -> None:
        tracked.log_epoch(in_original_units(result), ended_at)

    if trainer is not None:
        checkpointing = checkpointing or Checkpointing()
        trainer.go(checkpointing.path if checkpointing.every else None, checkpointing.resume_from)
        fit = trainer.results(on_epoch, on_idle=tracked.heartbeat)
    else:
        with tracked.beating():
            fit = fit_here(backend, settings, standardizer, splits, on_epoch, checkpointing)
        predictor = Predictor(backend, standardizer, task, list(splits.info.classes))
    fit = FitResult([in_original_units(result) for result in fit.history], fit.best_epoch, fit.stopped_early)
    metrics = {
        "best_epoch": float(fit.best_epoch),
        "epochs_trained": float(len(fit.history)),
        "train_seconds": float(sum(result.seconds for result in fit.history)),
        "best_train_loss": fit.best.train_loss,
        "best_val_loss": fit.best.val_loss,
    }
    tracked.log_metrics(metrics)
    tracked.log_figure(plots.loss_curve(fit, plot_title(tracked, splits), task.loss_label), "plots/loss_curve.png")
    if trainer is None:
        return Trained(fit, metrics, predictor=predictor)
    # Saved by the child while this process logged the above; its outputs come as report() asks for them.
    saved, arriving = trainer.trained()
    return Trained(fit, metrics, arriving=Outputs(task, arriving, arriving.artifacts, saved))


def report(outputs: Outputs, splits: Splits, tracked: TrackedRun) -> tuple[Evaluation, dict[str, float]]:
    """Log the model (when saved), then evaluate against the baselines and log metrics, predictions,
    the table and the task's plots and artifacts. A training process may still be predicting while
    the model is logged: each split's outputs are waited for only when used."""
    task, predictions = outputs.task, outputs.predictions
    if outputs.saved is not None:
        tracked.log_model(outputs.saved)
    evaluation = evaluate(task, splits, predictions["test"])
    tracked.log_text(task.predictions_csv(evaluation), "predictions.csv")
    tracked.log_text(evaluation.table() + "\n", "results.txt")
    for path, figure in task.figures(evaluation, plot_title(tracked, splits)).items():
        tracked.log_figure(figure, path)
    for path, text in outputs.artifacts().items():
        tracked.log_text(text, path)
    metrics = {}
    if len(splits.val):  # after the test split's work: a training process may still be predicting these
        val = task.score(splits.val.y, predictions["val"])
        # A language model's val "loss" is the per-epoch curve's name: its final value is best_val_loss.
        metrics.update({f"val_{name}": value for name, value in val.items() if f"val_{name}" not in FINAL_LOSS_METRICS})
    metrics.update(evaluation.flat())
    tracked.log_metrics(metrics)
    return evaluation, metrics


def run_params(cfg: DictConfig | dict, splits: Splits) -> dict[str, object]:
    """The resolved config with dotted keys (credentials removed), plus the data's sizes."""
    tree = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if isinstance(cfg, DictConfig) else cfg
    from src.tracking import flatten

    params = flatten(tree)  # type: ignore[arg-type]
    if params.get("tracking.uri"):
        params["tracking.uri"] = redact(str(params["tracking.uri"]))
    params.update({f"data.num_{name}": len(split) for name, split in splits.items()})
    params["data.test_overlap"] = round(splits.test_overlap(), 6)
    return params


def plot_title(tracked: TrackedRun, splits: Splits) -> str:
    return f"{splits.info.name}: {tracked.tags.get('framework', '')} {tracked.tags.get('cell', '')}"
