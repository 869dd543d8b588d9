"""Sweeps grouped in MLflow: one parent run per `-m` sweep, every job a child run of it.

`MlflowSweepCallback` is a Hydra callback (registered in conf/config.yaml). At the start of a
multirun it creates the store and experiment once (so parallel jobs never race on a new SQLite
store) and opens the parent run; it hands the parent's id to the jobs through the environment, which
every launcher's workers inherit (joblib's processes, Ray's local workers; conf/hydra/launcher/
ray_cluster.yaml forwards it to a cluster). At the end it records the best child, its objective,
the number of failed jobs and a leaderboard on the parent, then ends it.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "RNNLAB_PARENT_RUN_ID"
SWEEP_ID_ENV = "RNNLAB_SWEEP_ID"
# Where the parent run is: a job must log there too (a URI that carries a secret never gets this far).
SWEEP_URI_ENV = "RNNLAB_SWEEP_TRACKING_URI"
SWEEP_EXPERIMENT_ENV = "RNNLAB_SWEEP_EXPERIMENT"
SWEEP_ENVIRONMENT = (PARENT_RUN_ENV, SWEEP_ID_ENV, SWEEP_URI_ENV, SWEEP_EXPERIMENT_ENV)
INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM})
# True once `ray.init` has blocked Ctrl-C and SIGTERM in the main thread (see `keep_sigterm_after_ray_init`).
_holding_interrupts = False
RELAY_THREAD = "rnnlab-interrupt-relay"


@dataclass(frozen=True)
class SweepContext:
    """What a job needs to join its sweep: the parent run, the sweep's id, and the store and experiment
    that hold the parent (empty where a launcher did not pass them on)."""

    parent_run_id: str
    sweep_id: str
    tracking_uri: str = ""
    experiment: str = ""

    @classmethod
    def from_environment(cls) -> SweepContext | None:
        parent, sweep = os.environ.get(PARENT_RUN_ENV), os.environ.get(SWEEP_ID_ENV)
        if not (parent and sweep):
            return None
        return cls(parent, sweep, os.environ.get(SWEEP_URI_ENV, ""), os.environ.get(SWEEP_EXPERIMENT_ENV, ""))

    def check_same_store(self, uri: str, experiment: str) -> None:
        """A job's run is a child of the sweep's parent run, so it must be in the parent's store and
        experiment: a sweep over `tracking.uri` or `tracking.experiment` (or a value that interpolates one
        of the swept keys) is refused, job by job, by name."""
        from src.errors import UserError
        from src.uris import redact

        for key, mine, sweeps in (
            ("tracking.uri", uri, self.tracking_uri),
            ("tracking.experiment", experiment, self.experiment),
        ):
            if sweeps and mine != sweeps:
                raise UserError(
                    f"{key}={redact(mine)!r} differs from its sweep's ({redact(sweeps)!r}): every job of a sweep is "
                    f"a child run of one parent run, in one store and experiment; start one sweep per {key}"
                )


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.uri = ""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Open the parent run, or stop the whole sweep (one line, exit 2) before any job runs: jobs
        without their parent would run ungrouped, and Hydra only warns when a callback fails."""
        from src.composed_jobs import compose_each_job_once, forget_composed_jobs
        from src.errors import UserError
        from src.training_process import discard_prestarted

        discard_prestarted()  # a sweep made by a config file, not `-m`: each job trains in its own way
        compose_each_job_once(config)
        keep_local_ray_on_loopback(config)
        import_ray_first(config)
        adopt_orphaned_descendants()
        try:
            claim_optuna_study(config)
        except UserError as error:  # the same search already runs: refused before any run exists
            forget_composed_jobs()
            print(f"error: {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        try:
            self._open_parent(config)
        except Exception as error:
            from src.uris import one_line

            log.debug("parent run not created", exc_info=True)
            forget_composed_jobs()
            message = one_line(error, limit=None)
            print(
                f"error: the sweep's parent run could not be created, no job was started: {message}",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(2) from None

    def _open_parent(self, config: DictConfig) -> None:
        from mlflow import MlflowClient

        from src.resume import end_dead_runs, process_tags
        from src.tracking import ensure_experiment
        from src.uris import check_reachable, redact, resolve_uri

        self.uri = resolve_uri(OmegaConf.select(config, "tracking.uri"))
        check_reachable(self.uri)
        experiment_id = ensure_experiment(self.uri, str(config.tracking.experiment))
        client = MlflowClient(self.uri)
        for dead in end_dead_runs(client, [experiment_id]):
            log.warning("run %s was RUNNING but its process is gone: ended KILLED", dead.info.run_id)
        sweep_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        sweep_overrides = redact(" ".join(config.hydra.overrides.task))
        parent = client.create_run(
            experiment_id,
            run_name=f"sweep-{sweep_id}",
            tags={
                "sweep_id": sweep_id,
                "sweep": "parent",
                "overrides": sweep_overrides,
                "objective": str(config.objective),
                **process_tags(),
            },
        )
        self.parent_run_id = parent.info.run_id
        os.environ[PARENT_RUN_ENV], os.environ[SWEEP_ID_ENV] = self.parent_run_id, sweep_id
        os.environ[SWEEP_URI_ENV], os.environ[SWEEP_EXPERIMENT_ENV] = self.uri, str(config.tracking.experiment)
        atexit.register(self._end_if_interrupted)
        log.info("sweep %s: parent MLflow run %s", sweep_id, self.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow import MlflowClient

        from src.composed_jobs import forget_composed_jobs
        from src.leaderboard import summarize_sweep

        forget_composed_jobs()
        if self.parent_run_id is None:
            return
        client = MlflowClient(self.uri)
        try:
            summary = summarize_sweep(client, self.parent_run_id, str(config.objective))
            log.info(
                "sweep %s: best run %s with %s = %s; %d failed, %d reused",
                os.environ.get(SWEEP_ID_ENV),
                summary.get("best_run_id"),
                config.objective,
                summary.get("best_objective"),
                summary["failed"],
                summary["reused"],
            )
            all_failed = summary["jobs"] > 0 and summary["failed"] == summary["jobs"]
            client.set_terminated(self.parent_run_id, "FAILED" if all_failed else "FINISHED")
        except BaseException:
            client.set_terminated(self.parent_run_id, "FAILED")
            raise
        finally:
            parent_run_id, sweep_id = self.parent_run_id, os.environ.get(SWEEP_ID_ENV, "")
            self.parent_run_id = None
            for name in SWEEP_ENVIRONMENT:
                os.environ.pop(name, None)
        self._register_best(config, summary, parent_run_id, sweep_id)
        shut_down_ray()  # the record is whole: from here a Ray sweep only exits
        if all_failed:  # a sweep that produced nothing is not a success, whatever Hydra returns
            print(
                f"error: all {summary['jobs']} jobs of the sweep failed (their runs' `error` tags say why)",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(2)

    def _register_best(self, config: DictConfig, summary: dict[str, Any], parent_run_id: str, sweep_id: str) -> None:
        """With tracking.registered_model, the best job's model becomes a new version of it, `champion`;
        after the parent has ended, so that a refused registration costs nothing but a warning."""
        from src.registry import CHAMPION, register_run_model

        name = OmegaConf.select(config, "tracking.registered_model")
        if not name:
            return
        best = summary.get("best_run_id")
        if best is None:
            log.warning("sweep %s has no FINISHED job: nothing registered as %r", sweep_id, name)
            return
        tags = {"sweep_id": sweep_id, "objective": str(config.objective)}
        register_run_model(self.uri, best, str(name), alias=CHAMPION, tags=tags, also_tag=[parent_run_id])

    def _end_if_interrupted(self) -> None:
        """Ctrl-C, SIGTERM or a crash of the sweeper: end the jobs' RUNNING runs and the parent KILLED,
        stop every worker, then end KILLED any run a worker opened meanwhile.

        The runs are ended first, so the record is right even if this process dies during the rest
        (kill -9). With Ray this runs before Ray's own exit handler (`import_ray_first`) and shuts Ray
        down itself, after a finished sweep too (`shut_down_ray`: Ray's handler would run part of its
        shutdown with SIGTERM fatal)."""
        ignore_interrupts()  # the process only exits now: a Ctrl-C or SIGTERM must not cut that short
        from src.composed_jobs import forget_composed_jobs

        forget_composed_jobs()
        if self.parent_run_id is None:
            shut_down_ray()
            return
        continue_stopped_workers()
        try:
            self._end_running_runs()
        except Exception:  # the store may be what failed: stop the workers anyway, then try again
            log.debug("ending the sweep's runs before stopping its workers failed", exc_info=True)
        try:
            shut_down_ray()
            stop_workers()
        finally:
            try:
                self._end_running_runs()
            except Exception as error:  # the store is what failed (a server gone): say so in one line
                from src.uris import one_line

                log.warning(
                    "sweep interrupted: its workers stopped, but its runs could not be ended KILLED (%s); the "
                    "next resume, sweep or `python -m src.runs cleanup` on that store ends them",
                    one_line(error),
                )
            else:
                log.warning(
                    "sweep interrupted: its workers stopped, its unfinished runs and parent %s ended KILLED",
                    self.parent_run_id,
                )
            self.parent_run_id = None

    def _end_running_runs(self) -> None:
        from mlflow import MlflowClient

        parent_run_id = self.parent_run_id
        if parent_run_id is None:
            return
        client = MlflowClient(self.uri)
        for run in client.search_runs(
            [client.get_run(parent_run_id).info.experiment_id],
            filter_string=f"tags.sweep_id = '{os.environ.get(SWEEP_ID_ENV, '')}' and attributes.status = 'RUNNING'",
        ):
            if run.info.run_id != parent_run_id:
                client.set_terminated(run.info.run_id, "KILLED")
        client.set_terminated(parent_run_id, "KILLED")


def uses_ray(config: DictConfig) -> bool:
    launcher = OmegaConf.select(config, "hydra.launcher")
    return launcher is not None and "RayLauncher" in str(launcher.get("_target_", ""))


def ray_node_tags() -> dict[str, str]:
    """In a job that Ray runs, the id of the Ray node it runs on (`ray_node_id`): which machine of a
    cluster ran it. Empty elsewhere; Ray is only looked at when its launcher already imported it."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    return {"ray_node_id": ray.get_runtime_context().get_node_id()}


def import_ray_first(config: DictConfig) -> None:
    """With a Ray launcher, import Ray before the sweep registers its exit handler: Ray registers its
    own (`ray.shutdown`) on import, and exit handlers run last-registered first, so the sweep's then
    runs before Ray's and shuts Ray down itself, with SIGINT and SIGTERM ignored (`shut_down_ray`)."""
    if uses_ray(config):
        with contextlib.suppress(ImportError):
            import ray

            keep_sigterm_after_ray_init(ray)


def keep_sigterm_after_ray_init(ray: Any) -> None:
    """`ray.init` makes SIGTERM `sys.exit` the driver (exit code 1, no word of what happened); put ours back
    (src/errors.py) once it returns, so that SIGTERM stops a Ray sweep as it stops any other: one line,
    exit 143, the runs ended KILLED by the exit handler.

    And from `ray.init` on, Ctrl-C and SIGTERM stay blocked in the main thread, so in every thread Ray
    starts (they inherit the mask); one thread takes them (`_relay_interrupts`) and hands them to the main
    thread as Python's own handler would. Ray's core worker, as `ray.shutdown` tears it down, puts
    SIGTERM's default action back (its C++ side uninstalls its failure-signal handlers, even over an
    ignored SIGTERM), and a SIGTERM then delivered to any thread that did not block it killed the sweep
    (exit -15, seen in CI) and left Ray's dashboard and runtime-env agents running with no parent.
    Blocking only during the shutdown was not enough: Ray starts threads after `ray.init` too (the first
    task submitted starts one), with whatever mask the main thread had."""
    from src.errors import stop_on_sigterm

    if getattr(ray.init, "_keeps_sigterm", False):
        return
    os.register_at_fork(after_in_child=_unblock_interrupts_in_child)
    original = ray.init

    @functools.wraps(original)
    def init(*args: Any, **kwargs: Any) -> Any:
        global _holding_interrupts
        signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
        _holding_interrupts = True
        try:
            return original(*args, **kwargs)
        finally:
            stop_on_sigterm()
            if not any(thread.name == RELAY_THREAD for thread in threading.enumerate()):
                threading.Thread(target=_relay_interrupts, name=RELAY_THREAD, daemon=True).start()

    init._keeps_sigterm = True  # type: ignore[attr-defined]
    ray.init = init


def _relay_interrupts() -> None:
    """Take each Ctrl-C and SIGTERM (blocked in every other thread) and raise it in the main thread as if
    it had arrived there: the handler Python has for it runs (src/errors.py's, raising KeyboardInterrupt),
    or nothing once the sweep's clean-up ignores it. A thread's `sigwait` takes a blocked signal whatever
    its action, so SIGTERM's default action, put back by Ray for a moment, never applies."""
    while True:
        number = signal.sigwait(INTERRUPTS)
        if signal.getsignal(number) not in (signal.SIG_IGN, signal.SIG_DFL, None):
            _thread.interrupt_main(signal.Signals(number))


def _unblock_interrupts_in_child() -> None:
    """A process started from the main thread once it holds Ctrl-C and SIGTERM back (Ray's GCS and raylet)
    gets them back, so that `ray stop`, Ray's own shutdown and `stop_workers` can still stop it. Runs in
    the child of every fork made from Python, and of every `subprocess` child with a `preexec_fn`, as all
    of Ray's are."""
    if _holding_interrupts:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)


def shut_down_ray() -> None:
    """Shut Ray down with Ctrl-C and SIGTERM ignored from here to the exit: the sweep's clean-up and exit
    are not cut short by an impatient second signal. Ignored first, so that the relay drops them
    (`keep_sigterm_after_ray_init`); ignored again after, as Ray's shutdown leaves SIGTERM's default
    action in place. `ray.shutdown` disconnects before it stops Ray's processes: killing the GCS or raylet
    under a connected driver makes Ray's core worker abort this process (SIGABRT)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    global _holding_interrupts
    ignore_interrupts()
    try:
        ray.shutdown()
    except Exception:  # a broken connection: stop_workers still stops what Ray started
        log.debug("ray.shutdown failed during the sweep's clean-up", exc_info=True)
    finally:
        ignore_interrupts()
        if _holding_interrupts and threading.current_thread() is threading.main_thread():
            # Ignored now, so no longer held: a process started from here on (by a later exit handler)
            # must not inherit them blocked, as subprocess's children do without a preexec_fn.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)
            _holding_interrupts = False


def ignore_interrupts() -> None:
    """Ctrl-C and SIGTERM no longer interrupt this process (its clean-up), in the main thread only."""
    if threading.current_thread() is threading.main_thread():
        for number in INTERRUPTS:
            signal.signal(number, signal.SIG_IGN)


def keep_local_ray_on_loopback(config: DictConfig) -> None:
    """A local Ray instance (hydra/launcher=ray_local) listens on this machine's loopback only.

    Ray 2.60 turns a node address of 127.0.0.1 into the machine's reachable address, and its GCS,
    raylet and workers then listen on every interface, unless multi-node clusters are switched off
    (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, what Ray does by default on macOS and Windows). Set before the
    launcher imports Ray; a user's own value wins, and connecting to a cluster (an address) is left alone.
    """
    if not uses_ray(config):
        return
    if OmegaConf.select(config, "hydra.launcher.ray.init.address") in (None, "", "local"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def claim_optuna_study(config: DictConfig) -> None:
    """An Optuna search (hparams_search=optuna) claims its study's journal now, so that the same search
    started twice at once is refused in one line before either opens a parent run (src/optuna_storage.py).
    Any other sweeper, or an Optuna storage of the user's own, is left alone."""
    storage = OmegaConf.select(config, "hydra.sweeper.storage")
    if isinstance(storage, DictConfig) and storage.get("_target_") == "src.optuna_storage.JournalStorage":
        from src.optuna_storage import claim_study

        claim_study(str(storage.path))


def adopt_orphaned_descendants() -> None:
    """Make this process the Linux "child subreaper" of everything it starts: a Ray worker whose raylet
    died, or a loky worker whose manager died, is re-parented to the sweep rather than to init, so
    `stop_workers` still finds it. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def continue_stopped_workers() -> None:
    """SIGCONT to every stopped process this one started (SIGSTOP, a Ctrl-Z): a stopped worker keeps
    what it holds (SQLite's write lock, mid-transaction: every other writer waits out its timeout) and
    takes no SIGTERM until it is killed, so the sweep's end waited for both (70 s, not 10)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.status() == psutil.STATUS_STOPPED:
                child.resume()


def stop_workers(grace_seconds: float = 10.0, rounds: int = 5) -> None:
    """Terminate every process this one started (joblib's loky workers, Ray's raylet and workers), then
    kill what is left after `grace_seconds`, until none is left: a stopped sweep leaves nothing training
    behind. Rounds, because a scheduler being stopped can still start a worker for the next job (Ray
    retries a task whose worker died), and such a worker could otherwise open a run after the clean-up."""
    import psutil

    for _ in range(rounds):
        children = psutil.Process().children(recursive=True)
        if not children:
            return
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        continue_stopped_workers()  # one stopped meanwhile takes its SIGTERM only once continued
        _, alive = psutil.wait_procs(children, timeout=grace_seconds)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(alive, timeout=grace_seconds)
    log.warning(
        "processes still alive after stopping the sweep's workers: %s",
        [child.pid for child in psutil.Process().children(recursive=True)],
    )
