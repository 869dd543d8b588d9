"""Which run is which across processes: run keys, heartbeats, dead runs, and claiming a run to resume.

- `run_key`: a hash of the resolved config without what cannot change the result (tracking.*, the
  checkpoint interval, the objective's name) plus the data's digest. Equal keys, same training.
- Heartbeat tags (`heartbeat.host`, `.pid`, `.process_start`, `.time`, `.epoch`) say which process
  owns a RUNNING run; on the same host a run whose process is gone (or whose PID now belongs to
  another process) is dead, and `end_dead_runs` ends it KILLED.
- A run is owned by the process holding a lock file beside its checkpoint, so two processes can
  never resume the same run at once; the operating system releases it when a process dies, even
  by kill -9.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # MLflow is imported by whoever passes a client: composing conf/ needs none
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)

RUN_KEY_TAG = "run_key"
# Config keys that do not change what is trained: where it is tracked, how often it is checkpointed,
# and which metric a sweeper reads afterwards.
KEYS_WITHOUT_EFFECT = ("tracking", "trainer.checkpoint_every", "trainer.subprocess", "objective")
UNFINISHED = ("KILLED", "FAILED")
HOST_TAG, PID_TAG, START_TAG = "heartbeat.host", "heartbeat.pid", "heartbeat.process_start"


def run_key(config: Mapping[str, Any], data_digest: str) -> str:
    """A hash of the resolved config (as plain data) minus KEYS_WITHOUT_EFFECT, and the data digest."""
    tree = json.loads(json.dumps(config, default=str))
    for dotted in KEYS_WITHOUT_EFFECT:
        *parents, leaf = dotted.split(".")
        node = tree
        for parent in parents:
            node = node.get(parent, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    text = json.dumps({"config": tree, "data_digest": data_digest}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def process_tags() -> dict[str, str]:
    """The tags that name this process as the owner of a run."""
    import psutil

    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        START_TAG: f"{psutil.Process().create_time():.3f}",
        "heartbeat.time": f"{time.time():.3f}",
    }


def process_gone(tags: Mapping[str, str]) -> bool:
    """True when the run's owning process is known to be dead: same host, and its PID is gone or now
    belongs to a process started at another time. A run of another host, or one without heartbeat
    tags, is never called dead here (`src.runs cleanup --stale-minutes` handles those)."""

    if tags.get(HOST_TAG) != socket.gethostname() or PID_TAG not in tags:
        return False
    try:
        pid = int(tags[PID_TAG])
    except ValueError:
        return True
    return pid_gone(pid, float(tags[START_TAG]) if START_TAG in tags else None)


def pid_gone(pid: int, started_at: float | None) -> bool:
    """True when no process of this host has `pid`, or the one that has it started at another time than
    `started_at` (the PID was reused); when `started_at` is None, only whether the PID is in use."""
    import psutil

    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False
    return started_at is not None and abs(started - started_at) > 1.0


def owner_checkable(tags: Mapping[str, str]) -> bool:
    """Whether the run's owning process can be checked from here: it ran on this host and named its PID.
    Then `process_gone` says whether it lives, whatever the age of its heartbeat."""
    return tags.get(HOST_TAG) == socket.gethostname() and PID_TAG in tags


def heartbeat_age_minutes(run: Run) -> float:
    """Minutes since the run's last heartbeat (or its start, without one)."""
    last = float(run.data.tags.get("heartbeat.time", run.info.start_time / 1000))
    return (time.time() - last) / 60


def end_dead_runs(client: MlflowClient, experiment_ids: Iterable[str], stale_minutes: float | None = None) -> list[Run]:
    """End KILLED every RUNNING run whose process is gone (and, with `stale_minutes`, every RUNNING run of
    another host, or without heartbeat tags, whose heartbeat is older than that); returns the runs it
    ended. A run of this host whose process lives is never ended: an epoch may outlast any staleness."""
    ids = list(experiment_ids)
    if not ids:
        return []
    ended = []
    for run in client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=50000):
        stale = (
            stale_minutes is not None
            and not owner_checkable(run.data.tags)
            and heartbeat_age_minutes(run) > stale_minutes
        )
        if process_gone(run.data.tags) or stale:
            client.set_terminated(run.info.run_id, "KILLED")
            client.set_tag(run.info.run_id, "ended_by", "dead-run cleanup: its process was gone")
            ended.append(run)
    return ended


def runs_with_key(client: MlflowClient, experiment_id: str, key: str, statuses: Iterable[str]) -> list[Run]:
    """Runs with this run key in these statuses, newest first."""
    wanted = set(statuses)
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{RUN_KEY_TAG} = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=50000,
    )
    return [run for run in runs if run.info.status in wanted]


class RunClaim:
    """An exclusive, process-lifetime lock on one run (a lock file beside its checkpoint)."""

    def __init__(self, lock_path: Path) -> None:
        from filelock import FileLock

        lock_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(lock_path), timeout=0)

    def acquire(self) -> bool:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()


def search_key(root: Any) -> str:
    """An Optuna study's name: `rnnlab-` and a hash of the search's base config (without hydra.* and
    tracking.*), so re-running an interrupted search continues its study and another search never
    mixes its trials in."""
    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(root, resolve=False)
    assert isinstance(tree, dict)
    tree.pop("hydra", None)
    return "rnnlab-" + run_key({str(key): value for key, value in tree.items()}, "")[:12]


def study_storage(root: Any) -> str:
    """The Optuna journal file (src/optuna_storage.py) beside the tracking store (next to a SQLite file),
    or in the local checkpoint spool for a server."""
    from src.uris import resolve_uri, spool_folder, sqlite_path

    uri = resolve_uri(root.tracking.uri)
    database = sqlite_path(uri)
    folder = database.parent if database else spool_folder()
    return str(folder / f"optuna-{search_key(root)}.jsonl")
