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
import logging
import os
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
    def from_environment(cls) -> "SweepContext | None":
        parent, sweep = os.environ.get(PARENT_RUN_ENV), os.environ.get(SWEEP_ID_ENV)
        return cls(parent, sweep) if parent and sweep else None


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.uri = ""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow import MlflowClient

        from src.tracking import ensure_experiment, redact, resolve_uri

        self.uri = resolve_uri(OmegaConf.select(config, "tracking.uri"))
        experiment_id = ensure_experiment(self.uri, str(config.tracking.experiment))
        sweep_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        sweep_overrides = redact(" ".join(config.hydra.overrides.task))
        parent = MlflowClient(self.uri).create_run(
            experiment_id, run_name=f"sweep-{sweep_id}",
            tags={"sweep_id": sweep_id, "sweep": "parent", "overrides": sweep_overrides,
                  "objective": str(config.objective)})
        self.parent_run_id = parent.info.run_id
        os.environ[PARENT_RUN_ENV], os.environ[SWEEP_ID_ENV] = self.parent_run_id, sweep_id
        atexit.register(self._end_if_interrupted)
        log.info("sweep %s: parent MLflow run %s", sweep_id, self.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mlflow import MlflowClient

        from src.compare import summarize_sweep

        if self.parent_run_id is None:
            return
        client = MlflowClient(self.uri)
        try:
            summary = summarize_sweep(client, self.parent_run_id, str(config.objective))
            log.info("sweep %s: best run %s with %s = %s; %d failed", os.environ.get(SWEEP_ID_ENV),
                     summary.get("best_run_id"), config.objective, summary.get("best_objective"), summary["failed"])
            client.set_terminated(self.parent_run_id, "FINISHED")
        except BaseException:
            client.set_terminated(self.parent_run_id, "FAILED")
            raise
        finally:
            self.parent_run_id = None
            for name in (PARENT_RUN_ENV, SWEEP_ID_ENV):
                os.environ.pop(name, None)

    def _end_if_interrupted(self) -> None:
        """Ctrl-C or a crash of the sweeper: the parent ends KILLED rather than staying RUNNING."""
        if self.parent_run_id is not None:
            from mlflow import MlflowClient

            MlflowClient(self.uri).set_terminated(self.parent_run_id, "KILLED")
            self.parent_run_id = None
