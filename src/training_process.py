"""A single run trains in a forked child process while this process does the run's MLflow work.

`python -m src.train` (one run, not a sweep's job, with `trainer.subprocess=true`, the default on
Linux) forks before Hydra composes the config (`prestart`): while this process composes it, checks it and
generates the data, the child imports the framework that the command line names (or the primary
config's default framework), then receives the settings and the data over its pipe. MLflow is imported
only after that. The child then builds the network and trains on one core, while the parent imports
MLflow, opens the store, creates the run and logs its set-up on the other, then logs each epoch the
child sends and imports what evaluation and model logging will need. On the 2-core machine this
takes 2-3 s of fixed cost off every run (benchmarks/workflow.py); the numbers are the same as
training in one process (same operations, same seed; tested).

The protocol, over one pipe: the child sends ("ready", device) once its network is built, then
("epoch", EpochResult) per epoch, ("done", FitResult) as soon as training ends, ("trained",
SavedPredictor or None, split names) with the trained predictor saved in a temporary directory (when
the model is logged), ("predicted", name, outputs) for the test inputs, then the validation inputs, and
("artifacts", path → text) of the task (a language model's sample); or ("error", exception). Meanwhile
the parent logs the final metrics, the loss curve and the model, then evaluates the test split while
the child may still predict the validation split: the two cores share the work after training too.
The parent never imports the framework: everything that needs the network happens in the child.
The parent sends
("go", checkpoint path, checkpoint to resume from) once the run exists: a plain run starts training
without waiting for it (the child waits only when its first checkpoint is due), a resumed or possibly
reused run waits for it first.

Faults: the child dies with its parent (PR_SET_PDEATHSIG), so kill -9 of the run's process leaves no
training behind; Ctrl-C or SIGTERM interrupts both, and the parent ends the run KILLED after
stopping the child; a child that dies or fails ends the run FAILED with its reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

import numpy as np

from src.config import Config
from src.data.base import Split, Splits
from src.data.scaling import Standardizer
from src.errors import UserError
from src.frameworks import backend_class
from src.frameworks.base import Backend, cpu_threads
from src.frameworks.checkpoint import Checkpoint, EpochResult
from src.frameworks.spec import ModelSpec
from src.frameworks.training import Checkpointing, FitResult
from src.predictor import INPUT_EXAMPLE_ROWS, Predictor, SavedPredictor
from src.tasks.task import Task

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0
# The throw-away figure costs about 1 s of CPU and saves about 0.5 s after training: it is drawn only
# while training is expected to go on at least this long (`training_left_seconds`).
WARM_UP_FIGURE_LEAD_SECONDS = 3.0
# While the child trains and sends nothing, the parent's `on_idle` (the run's heartbeat) this often.
IDLE_SECONDS = 5.0


def can_fork() -> bool:
    """Forking is how the child gets the config and data without pickling: Linux (and POSIX) only."""
    return hasattr(os, "fork") and sys.platform.startswith("linux")


@dataclass(frozen=True)
class Go:
    checkpoint_path: Path | None
    resume_from: Checkpoint | None


class TrainingProcess:
    """The parent's handle on the child that trains (see the module's docstring)."""

    def __init__(
        self, pid: int, connection: Connection, settings: Config, splits: Splits, task: Task, prestarted: bool = False
    ) -> None:
        self.pid, self.connection, self.prestarted = pid, connection, prestarted
        self.settings, self.splits, self.task = settings, splits, task
        self.device: str | None = None
        self._stopped = False

    @classmethod
    def start(cls, settings: Config, splits: Splits, task: Task, wait_for_go: bool) -> TrainingProcess:
        """Hand the job to the prestarted child, else fork one; it builds the network at once and, unless
        `wait_for_go`, starts training."""
        prestarted = _take_prestarted()
        if prestarted is not None and _job_environment_changed():
            # Hydra set variables (hydra.job.env_set) that a framework may read as it is imported: the
            # child that imported it without them cannot train this job.
            _kill(*prestarted)
        elif prestarted is not None:
            pid, connection = prestarted
            try:
                connection.send((settings, splits, task, wait_for_go, os.getcwd(), _job_logging()))
            except Exception:  # it died before its job came (killed alone), or the job does not pickle
                _kill(pid, connection)  # ...: fork one that inherits the job instead
            else:
                return cls(pid, connection, settings, splits, task, prestarted=True)
        parent_end, child_end = Pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            parent_end.close()
            _child(child_end, settings, splits, task, wait_for_go)
        child_end.close()
        return cls(pid, parent_end, settings, splits, task)

    def wait_ready(self) -> str:
        """The device the child's network is on, once built: a framework or device the machine lacks
        fails here, before any run exists."""
        if self.device is None:
            kind, *values = self._receive()
            if kind != "ready":
                raise RuntimeError(f"training process sent {kind!r} before its network was built")
            self.device = values[0]
        return self.device

    def go(self, checkpoint_path: Path | None, resume_from: Checkpoint | None) -> None:
        self._send(("go", Go(checkpoint_path, resume_from)))

    def results(
        self, on_epoch: Callable[[EpochResult, float], None], on_idle: Callable[[], None] | None = None
    ) -> FitResult:
        """Pass each epoch to `on_epoch` as the child finishes it; the fit, once training ends.
        Meanwhile, whenever no message waits, this process takes the next step of its warm-up (imports
        evaluation needs, a throw-away figure); steps training outlasted are skipped: the imports happen
        when used, and a throw-away figure drawn after training would only add its cost. The figure
        waits for an epoch that says training will last long enough for it to pay (a short run's
        training ends first: it only cost CPU that the child, or a second run, could use). `on_idle` is
        called every IDLE_SECONDS that no message comes (the run's heartbeat during a long epoch)."""
        import_plotting, draw_a_figure = warm_up_steps()
        preparations = [import_plotting, draw_a_figure]
        epochs: list[EpochResult] = []
        while True:
            while preparations and not self.connection.poll():
                if preparations[0] is draw_a_figure and (
                    training_left_seconds(epochs, self.settings.trainer.epochs) < WARM_UP_FIGURE_LEAD_SECONDS
                ):
                    break  # maybe after the next epoch
                preparations.pop(0)()
            while on_idle is not None and not self.connection.poll(IDLE_SECONDS):
                on_idle()
            kind, *values = self._receive()
            if kind == "epoch":
                epochs.append(values[0])
                on_epoch(*values)  # the result and when it ended
            elif kind == "done":
                return values[0]
            else:
                raise RuntimeError(f"training process sent {kind!r} during training")

    def trained(self) -> tuple[SavedPredictor | None, ArrivingOutputs]:
        """After `results`: the trained predictor as the child saved it (when the model is logged; the
        caller discards it), and its outputs for the test and validation inputs (those the splits have)
        and the task's artifacts as the child sends them."""
        kind, *values = self._receive()
        if kind != "trained":
            raise RuntimeError(f"training process sent {kind!r} instead of the trained network")
        saved, names = values
        return saved, ArrivingOutputs(self, names)

    def stop(self) -> None:
        """Stop the child if it still runs (SIGTERM: it stops between steps; SIGKILL after a grace)."""
        if self._stopped:
            return
        self._stopped = True
        self.connection.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        _wait_or_kill(self.pid, STOP_GRACE_SECONDS)

    def _reap(self) -> None:
        self._stopped = True
        self.connection.close()
        _wait_or_kill(self.pid, STOP_GRACE_SECONDS)

    def _send(self, message: tuple) -> None:
        try:
            self.connection.send(message)
        except (BrokenPipeError, OSError):
            self._receive()  # the child's own error, or that it died
            raise

    def _receive(self) -> tuple:
        try:
            message = self.connection.recv()
        except (EOFError, OSError):
            status = _wait_or_kill(self.pid, STOP_GRACE_SECONDS)
            self._stopped = True
            # An OOM kill or a kill -9 of the child alone: the run's fault, said in one line; its last
            # checkpoint stays for tracking.resume=true.
            raise UserError(
                f"the training process (pid {self.pid}) died ({status}); its last checkpoint is kept: "
                f"resume with tracking.resume=true"
            ) from None
        if message[0] == "error":
            self._reap()
            raise message[1]
        return message


class ArrivingOutputs(Mapping[str, np.ndarray]):
    """The child's outputs per split name, each waited for only when first looked up (the child sends
    the test split's first), then the task's artifacts (`artifacts`); the child is reaped once all
    have come."""

    def __init__(self, trainer: TrainingProcess, names: list[str]) -> None:
        self._trainer, self._names = trainer, list(names)
        self._arrived: dict[str, np.ndarray] = {}
        self._artifacts: dict[str, str] | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        while name not in self._arrived:
            self._next()
        return self._arrived[name]

    def artifacts(self) -> dict[str, str]:
        """The task's artifact texts (path → text), made by the child after its predictions."""
        while self._artifacts is None:
            self._next()
        return self._artifacts

    def _next(self) -> None:
        kind, *values = self._trainer._receive()
        if kind == "predicted":
            self._arrived[values[0]] = values[1]
        elif kind == "artifacts":
            self._artifacts = values[0]
        else:
            raise RuntimeError(f"training process sent {kind!r} instead of its predictions")
        if self._artifacts is not None and len(self._arrived) == len(self._names):
            self._trainer._reap()

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def fit_here(
    backend: Backend,
    settings: Config,
    standardizer: Standardizer,
    splits: Splits,
    on_epoch: Callable[[EpochResult], None],
    checkpointing: Checkpointing | None,
) -> FitResult:
    """Train `backend` in this process on the standardised splits: what the child does, and what a run
    without a training process does itself."""
    # Without a validation split (dataset.val_fraction=0) early stopping and val_loss watch the training set.
    watched = splits.val if len(splits.val) else splits.train
    with cpu_threads(settings.framework.threads):
        return backend.fit(
            standardizer.transform(splits.train),
            standardizer.transform(watched),
            settings.trainer,
            on_epoch,
            checkpointing,
        )


def evaluated_splits(splits: Splits) -> list[tuple[str, Split]]:
    """The splits a trained predictor is evaluated on, the test split first: a training process sends
    its outputs in this order, so the parent evaluates the test split while the child predicts the rest."""
    return sorted(
        ((name, split) for name, split in splits.items() if name != "train" and len(split)),
        key=lambda item: item[0] != "test",
    )


def warm_up_steps() -> tuple[Callable[[], object], Callable[[], object]]:
    """What the parent can do while the child trains on the other core, in order: import what it
    needs after training, then, when training will outlast it, draw a figure once (the first one a
    process saves loads fonts and the renderer: 0.5 s of the two figures a run logs after training).
    Never the framework: the child saves, predicts and writes the artifacts (`SavedPredictor`)."""

    def import_plotting() -> None:
        import matplotlib.backends.backend_agg  # noqa: F401  # mlflow.log_figure draws with Agg

    def draw_a_figure() -> None:
        from src import plots

        plots.warm_up()

    return import_plotting, draw_a_figure


def training_left_seconds(epochs: list[EpochResult], max_epochs: int) -> float:
    """How long training should still take, from the epochs it sent so far (their mean time, for the
    epochs up to `max_epochs` left; early stopping may end it sooner); 0 before the first epoch."""
    if not epochs:
        return 0.0
    mean_seconds = sum(result.seconds for result in epochs) / len(epochs)
    return max(0, max_epochs - epochs[-1].epoch) * mean_seconds


_prestarted: tuple[int, Connection] | None = None
_environment_at_prestart: dict[str, str] = {}
# Command-line words that make Hydra do something other than one run, or may make it a sweep.
NOT_ONE_RUN = ("hydra.mode", "hydra/launcher", "hydra/sweeper", "hparams_search", "trainer.subprocess")


def prestart(argv: list[str]) -> None:
    """Fork the training process now, before Hydra composes the config (0.5-0.7 s of imports,
    composition and data), so that it imports the framework meanwhile. Only for a plain command line
    of overrides (no flag such as -m, --cfg, --help; nothing that may make it a sweep or keep training
    in this process): every other case forks as before, or trains here. A prestarted child nobody
    hands a job to is killed by `discard_prestarted`, or dies with this process."""
    global _prestarted
    if _prestarted is not None or not can_fork():
        return
    if any(word.startswith("-") or any(name in word for name in NOT_ONE_RUN) for word in argv):
        return
    framework = framework_named(argv)
    _environment_at_prestart.update(os.environ)
    parent_end, child_end = Pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        parent_end.close()
        _prestarted_child(child_end, framework)
    child_end.close()
    _prestarted = (pid, parent_end)


def framework_named(argv: list[str]) -> str | None:
    """The framework this command line trains with, where that is known before composing: the last
    `framework=` override, else the primary config's default unless an experiment may change it."""
    values = dict(word.lstrip("+").split("=", 1) for word in argv if "=" in word)  # the last of each key
    # A value override (framework.name=) wins over the group's choice (framework=) wherever it stands.
    if "framework.name" in values or "framework" in values:
        return values.get("framework.name", values.get("framework"))
    if any(word.lstrip("+~").startswith("experiment") for word in argv):
        return None
    import yaml

    from src.paths import CONF_DIR

    try:
        defaults = yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None
    return next((entry["framework"] for entry in defaults if isinstance(entry, dict) and "framework" in entry), None)


def discard_prestarted() -> None:
    """Kill the prestarted child when this run will not use it (a failed check, training in this
    process, a sweep); a no-op once `TrainingProcess.start` took it."""
    prestarted = _take_prestarted()
    if prestarted is not None:
        _kill(*prestarted)


def _take_prestarted() -> tuple[int, Connection] | None:
    global _prestarted
    prestarted, _prestarted = _prestarted, None
    return prestarted


def _kill(pid: int, connection: Connection) -> None:
    connection.close()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_or_kill(pid, STOP_GRACE_SECONDS)


def _import_quietly(framework: str | None) -> None:
    """Import the framework's backend ahead of need; an error here is raised again, where it belongs,
    when the job imports it."""
    with contextlib.suppress(Exception):
        if framework is not None:
            backend_class(framework)


def _prestarted_child(connection: Connection, framework: str | None) -> None:
    """Import the framework in a thread while reading the job, so that a job too large for the pipe's
    buffer never keeps the parent waiting; unpickle it (which may import modules) only once that import
    is done, then run it as a freshly forked child would, in the parent's folder and with the job's
    logging set-up. Exits quietly when the parent closes the pipe without a job."""
    try:
        die_with_parent()
        importing = threading.Thread(target=_import_quietly, args=(framework,), daemon=True)
        importing.start()
        job = connection.recv_bytes()
        importing.join()
    except BaseException:  # no job (EOFError), Ctrl-C or SIGTERM (KeyboardInterrupt) before it came
        os._exit(0)
    code = 1
    try:
        settings, splits, task, wait_for_go, cwd, logging_setup = pickle.loads(job)
        os.chdir(cwd)
        if logging_setup is not None:
            _configure_logging(*logging_setup)
    except KeyboardInterrupt:
        code = 130
    except BaseException as error:
        with contextlib.suppress(Exception):
            connection.send(("error", _portable(error)))
    else:
        _child(connection, settings, splits, task, wait_for_go)
    os._exit(code)


def _job_environment_changed() -> bool:
    """Whether the Hydra job under way set environment variables (hydra.job.env_set) to values the
    prestarted child did not start with."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    env_set = HydraConfig.get().job.env_set or {}
    return any(_environment_at_prestart.get(str(name)) != os.environ.get(str(name)) for name in env_set)


def _job_logging() -> tuple[Any, Any] | None:
    """Hydra's logging set-up of the job under way (hydra.job_logging resolved, hydra.verbose), for a
    child forked before Hydra made it; None outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    verbose = hydra.verbose if isinstance(hydra.verbose, (bool, str)) else list(hydra.verbose)
    job_logging = hydra.job_logging
    return (OmegaConf.to_container(job_logging, resolve=True) if job_logging is not None else None), verbose


def _configure_logging(job_logging: Any, verbose: Any) -> None:
    """What Hydra does for a job's process (its console and train.log handlers, hydra.verbose)."""
    from hydra.core.utils import configure_log
    from omegaconf import OmegaConf

    configure_log(
        OmegaConf.create(job_logging) if job_logging is not None else None,  # type: ignore[arg-type]
        OmegaConf.create(verbose) if isinstance(verbose, list) else verbose,
    )


def _wait_or_kill(pid: int, grace_seconds: float) -> str:
    """Wait for the child to exit, killing it after `grace_seconds`; how it ended."""
    deadline = time.monotonic() + grace_seconds
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return "already reaped"
        if done:
            if os.WIFSIGNALED(status):
                return f"killed by signal {os.WTERMSIG(status)}"
            return f"exit code {os.WEXITSTATUS(status)}"
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.01)


def _portable(error: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else one that says the same."""
    try:
        return pickle.loads(pickle.dumps(error))
    except Exception:
        kind = UserError if isinstance(error, UserError) else RuntimeError
        return kind(f"{type(error).__name__}: {error}")


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies, however it dies (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the call above
        os._exit(1)


def _child(connection: Connection, settings: Config, splits: Splits, task: Task, wait_for_go: bool) -> None:
    """Build, train, save; report each step to the parent. Ends the process (never returns)."""
    code = 0
    try:
        die_with_parent()
        go: list[Go] = []

        def receive_go() -> Go:
            if not go:
                kind, value = connection.recv()
                if kind != "go":
                    raise RuntimeError(f"expected go, got {kind!r}")
                go.append(value)
            return go[0]

        backend_type = backend_class(settings.framework.name.value)
        backend_type.check_device(settings.framework.device)
        standardizer = task.standardizer(splits, settings.dataset.standardize)
        spec = ModelSpec.from_config(settings.model, *task.network_sizes(splits), task.head)
        backend = backend_type.build(spec, settings.trainer.seed, settings.framework.device, settings.model.init.value)
        connection.send(("ready", backend.device))
        first = receive_go() if wait_for_go else None

        def checkpoint_path() -> Path:
            path = receive_go().checkpoint_path
            assert path is not None, "a checkpoint is due, so the parent named its path"
            return path

        checkpointing = Checkpointing(
            first.checkpoint_path if first else None,
            settings.trainer.checkpoint_every,
            first.resume_from if first else None,
            locate=None if first else checkpoint_path,
        )
        fit = fit_here(
            backend,
            settings,
            standardizer,
            splits,
            lambda result: connection.send(("epoch", result, time.time())),
            checkpointing,
        )
        connection.send(("done", fit))
        predictor = Predictor(backend, standardizer, task, list(splits.info.classes))
        saved = None
        if settings.tracking.log_model:  # saved here, so that the parent logs it without the framework
            saved = SavedPredictor.of(predictor, os.getppid(), splits.test.x[:INPUT_EXAMPLE_ROWS])  # the run's
        evaluated = evaluated_splits(splits)
        connection.send(("trained", saved, [name for name, _ in evaluated]))
        for name, split in evaluated:
            connection.send(("predicted", name, predictor.predict(split.x)))
        connection.send(("artifacts", task.artifacts(predictor, splits)))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the parent ends the run
        code = 130
    except BaseException as error:
        code = 1
        with contextlib.suppress(Exception):
            connection.send(("error", _portable(error)))
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
