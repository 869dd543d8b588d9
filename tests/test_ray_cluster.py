"""A real two-node Ray cluster on this machine runs a sweep with `hydra/launcher=ray_cluster`.

The README's "Ray cluster" section is this test's commands: a head (`ray start --head`), a second node
(`ray start --address`), an `mlflow server`, then the sweep with `RAY_ADDRESS` pointing at the head.
Ray 2.60 authenticates nodes with a token when one exists (`~/.ray/auth_token` switches the head to
token mode): every process gets `RAY_AUTH_MODE=token` and the test's own `RAY_AUTH_TOKEN`. Every Ray
process is started in a session of its own and killed by that session when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from src.paths import PROJECT_ROOT
from tests.conftest import free_port, mlflow_server, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.serial]

RAY = str(Path(sys.executable).parent / "ray")
SEEDS = (0, 1, 2, 3)


def session_processes(sessions: set[int]) -> list[psutil.Process]:
    """Every process in one of `sessions` (what `ray start` and the daemons it spawned run in)."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getsid(process.pid) in sessions:
                found.append(process)
    return found


@contextlib.contextmanager
def ray_cluster(temp_dir: Path, env: dict[str, str]) -> Iterator[tuple[str, set[int]]]:
    """A Ray head and a second node on 127.0.0.1, one CPU each; the head's address and the sessions
    their processes run in. On exit every one of those processes is killed, and none may be left."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    sessions: set[int] = set()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", "78643200"]
    commands = [
        [RAY, "start", "--head", "--port", str(port), "--temp-dir", str(temp_dir), "--include-dashboard=false"],
        [RAY, "start", "--address", address],
    ]
    try:
        for command in commands:
            starter = subprocess.Popen(
                [*command, *common, "--disable-usage-stats"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            sessions.add(starter.pid)
            output, _ = starter.communicate(timeout=180)
            assert starter.returncode == 0, output[-3000:]
        yield address, sessions
    finally:
        left = session_processes(sessions)
        for process in left:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(left, timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        assert session_processes(sessions) == [], "Ray processes left running"


def raylet_node_ids(sessions: set[int]) -> set[str]:
    """The node ids of the cluster's raylets (one per node), read from their command lines."""
    ids = set()
    for process in session_processes(sessions):
        with contextlib.suppress(psutil.Error):
            if process.name() == "raylet":
                ids |= {m.group(1) for arg in process.cmdline() if (m := re.fullmatch(r"--node_id=(\w+)", arg))}
    return ids


def test_sweep_runs_on_both_nodes_of_a_ray_cluster(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": uuid.uuid4().hex,
        "PYTHONPATH": str(PROJECT_ROOT),  # the nodes' workers import this checkout's src
    }
    # Ray's unix sockets live under the temp dir, and their paths have a length limit: a short one.
    with (
        tempfile.TemporaryDirectory(prefix="ray", dir="/tmp") as temp_dir,
        mlflow_server(tmp_path) as url,
        ray_cluster(Path(temp_dir), env) as (address, sessions),
    ):
        nodes = raylet_node_ids(sessions)
        assert len(nodes) == 2, nodes
        result = run_cli(
            "-m",
            "hydra/launcher=ray_cluster",
            f"tracking.uri={url}",
            "framework=numpy",
            "dataset=sum",
            "dataset.num_samples=200",
            "trainer.epochs=2",
            "model.hidden_size=8",
            "tracking.log_model=false",
            f"trainer.seed={','.join(map(str, SEEDS))}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
            env={**env, "RAY_ADDRESS": address},
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        client = MlflowClient(url)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        parents = [run for run in runs if run.data.tags.get("sweep") == "parent"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        children = [run for run in runs if run.data.tags.get("sweep") != "parent"]
        assert sorted(int(child.data.params["trainer.seed"]) for child in children) == list(SEEDS)
        for child in children:
            assert child.info.status == "FINISHED", child.data.tags.get("error")
            assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
            assert child.data.metrics["test_mse"] >= 0
        assert {child.data.tags["ray_node_id"] for child in children} == nodes  # both nodes ran jobs
