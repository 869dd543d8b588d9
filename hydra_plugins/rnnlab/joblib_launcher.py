"""`hydra/launcher=joblib_local`: Hydra's joblib launcher, with workers forked from the sweep's process.

Hydra's launcher runs jobs in loky workers: fresh interpreters that each import Hydra, MLflow and the
experiment (4-5 s of a 2-core machine, benchmarks/sweep.py) before their first job, while the sweep
waits. On Linux this launcher forks its workers instead, from the sweep's own process once it has
imported the experiment and opened the store: every worker starts with all of that already imported,
and runs job after job. The job's Hydra context, config and task function are inherited through the
fork, so only the job's index and overrides travel to a worker, and its JobReturn comes back pickled
with cloudpickle (as loky does it).

Forking is only safe from a process with one thread (a lock held by another thread would stay held in
the child): with more, where fork does not exist, or with `hydra.launcher.backend=loky`, the jobs go
to Hydra's loky workers as before. The store's pooled SQLite connections are never shared with a
worker (`src.tracking.fork_safe_connections`).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import threading
from collections.abc import Sequence
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn

from hydra_plugins.hydra_joblib_launcher import _core
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

log = logging.getLogger(__name__)


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


class ForkingJoblibLauncher(JoblibLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        requested = self.joblib.get("backend")
        if requested not in (None, "fork") or not can_fork():
            log.info("joblib launcher: loky workers (backend %s, %d threads)", requested, threading.active_count())
            return super().launch(job_overrides, initial_job_idx)
        from joblib import effective_n_jobs
        from joblib.externals import cloudpickle

        import src.experiment  # noqa: F401  # imported once here, inherited by every worker
        from src import plots
        from src.composed_jobs import forget_kept_jobs
        from src.forked_jobs import INHERITED, run_in_forked_workers
        from src.tracking import fork_safe_connections

        fork_safe_connections()
        # Matplotlib imported and its fonts and renderer loaded once, here: each job draws the run's
        # figures, and the sweep's summary its comparison (about 1 s cold in every process otherwise).
        plots.warm_up()
        assert self.config is not None
        _core.setup_globals()
        _core.configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        INHERITED.update(
            hydra_context=self.hydra_context,
            config=self.config,
            task_function=self.task_function,
            singleton_state=Singleton.get_state(),
        )
        workers = min(effective_n_jobs(self.joblib.get("n_jobs", -1)), len(job_overrides))
        log.info("joblib launcher: %d jobs in %d forked workers", len(job_overrides), workers)
        jobs = [(initial_job_idx + index, list(overrides)) for index, overrides in enumerate(job_overrides)]
        # Frozen objects are left out of garbage collection, whose passes would otherwise touch, and so
        # copy, every page a worker shares with this process (Python's advice for gc before fork).
        gc.freeze()
        try:
            returned = run_in_forked_workers(workers, jobs)
        finally:
            INHERITED.clear()
            forget_kept_jobs()  # each worker used its own copy of the batch's checked configs
            gc.unfreeze()
        return [cloudpickle.loads(value) for value in returned]
