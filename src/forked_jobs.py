"""The job a forked sweep worker runs (hydra_plugins/rnnlab/joblib_launcher.py), kept out of the
`hydra_plugins` package: Hydra re-executes that package's modules when it scans for plugins (in every
job), which would empty the context a worker inherited."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Set in the sweep's process just before the workers are forked; each worker reads its own copy.
INHERITED: dict[str, Any] = {}


def run_inherited_job(index: int, overrides: Sequence[str]) -> bytes:
    """In a forked worker: one job, with the Hydra context, config and task function the worker
    inherited; its JobReturn, cloudpickled (it holds config classes the standard pickle cannot name)."""
    from joblib.externals import cloudpickle

    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    return cloudpickle.dumps(execute_job(index, list(overrides), **INHERITED))
