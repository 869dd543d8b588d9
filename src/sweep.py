"""Sweeps grouped in MLflow: one parent run per `-m` sweep, every job a child run of it.

`MlflowSweepCallback` is a Hydra callback (registered in conf/config.yaml). At the start of a
multirun it creates the store and experiment once (so parallel jobs never race on a new SQLite
store) and opens the parent run; it hands the parent's id to the jobs through the environment, which
every launcher's workers inherit (joblib's processes, Ray's local workers; conf/hydra/launcher/
ray_cluster.yaml forwards it to a cluster). At the end it records the best child, its objective,
the number of failed jobs and a leaderboard on the parent, then ends it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "RNNLAB_PARENT_RUN_ID"
SWEEP_ID_ENV = "RNNLAB_SWEEP_ID"


@dataclass(frozen=True)
class SweepContext:
    """What a job needs to join its sweep: the parent run and the sweep's id."""

    parent_run_id: str
    sweep_id: str

    @classmethod
    def from_environment(cls) -> SweepContext | None:
        parent, sweep = os.environ.get(PARENT_RUN_ENV), os.environ.get(SWEEP_ID_ENV)
        return cls(parent, sweep) if parent and sweep else None


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.uri = ""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Open the parent run, or stop the whole sweep (one line, exit 2) before any job runs: jobs
        without their parent would run ungrouped, and Hydra only warns when a callback fails."""
        keep_local_ray_on_loopback(config)
        try:
            self._open_parent(config)
        except Exception as error:
            from src.uris import redact

            log.debug("parent run not created", exc_info=True)
            message = redact(str(error).splitlines()[0] if str(error) else type(error).__name__)
            print(
                f"error: the sweep's parent run could not be created, no job was started: {message}",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(2) from None

    def _open_parent(self, config: DictConfig) -> None:
        from mlflow import MlflowClient

        from src.resume import end_dead_runs, process_tags
        from src.tracking import check_reachable, ensure_experiment
        from src.uris import redact, resolve_uri

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
        atexit.register(self._end_if_interrupted)
        log.info("sweep %s: parent MLflow run %s", sweep_id, self.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow import MlflowClient

        from src.leaderboard import summarize_sweep

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
            self.parent_run_id = None
            for name in (PARENT_RUN_ENV, SWEEP_ID_ENV):
                os.environ.pop(name, None)
        if all_failed:  # a sweep that produced nothing is not a success, whatever Hydra returns
            print(
                f"error: all {summary['jobs']} jobs of the sweep failed (their runs' `error` tags say why)",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(2)

    def _end_if_interrupted(self) -> None:
        """Ctrl-C, SIGTERM or a crash of the sweeper: stop every worker, then end the jobs' runs that
        are still RUNNING and the parent KILLED, rather than leaving them RUNNING forever."""
        if self.parent_run_id is None:
            return
        import signal

        from mlflow import MlflowClient

        for number in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean-up short
            signal.signal(number, signal.SIG_IGN)
        stop_workers()
        client = MlflowClient(self.uri)
        for run in client.search_runs(
            [client.get_run(self.parent_run_id).info.experiment_id],
            filter_string=f"tags.sweep_id = '{os.environ.get(SWEEP_ID_ENV, '')}' and attributes.status = 'RUNNING'",
        ):
            if run.info.run_id != self.parent_run_id:
                client.set_terminated(run.info.run_id, "KILLED")
        client.set_terminated(self.parent_run_id, "KILLED")
        log.warning(
            "sweep interrupted: its workers stopped, its unfinished runs and parent %s ended KILLED", self.parent_run_id
        )
        self.parent_run_id = None


def keep_local_ray_on_loopback(config: DictConfig) -> None:
    """A local Ray instance (hydra/launcher=ray_local) listens on this machine's loopback only.

    Ray 2.60 turns a node address of 127.0.0.1 into the machine's reachable address, and its GCS,
    raylet and workers then listen on every interface, unless multi-node clusters are switched off
    (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, what Ray does by default on macOS and Windows). Set before the
    launcher imports Ray; a user's own value wins, and connecting to a cluster (an address) is left alone.
    """
    launcher = OmegaConf.select(config, "hydra.launcher")
    if launcher is None or "RayLauncher" not in str(launcher.get("_target_", "")):
        return
    if OmegaConf.select(launcher, "ray.init.address") in (None, "", "local"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def stop_workers(grace_seconds: float = 10.0) -> None:
    """Terminate every process this one started (joblib's loky workers, Ray's raylet and workers), then
    kill what is left after `grace_seconds`: a stopped sweep leaves nothing training behind."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace_seconds)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=grace_seconds)
