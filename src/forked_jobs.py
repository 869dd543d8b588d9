"""The forked workers of `hydra/launcher=joblib_local` (hydra_plugins/rnnlab/joblib_launcher.py) and
the job they run, kept out of the `hydra_plugins` package: Hydra re-executes that package's modules
when it scans for plugins (in every job), which would empty the context a worker inherited."""

from __future__ import annotations

import contextlib
import multiprocessing
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, NoReturn

# Set in the sweep's process just before the workers are forked; each worker reads its own copy.
INHERITED: dict[str, Any] = {}


def run_inherited_job(index: int, overrides: Sequence[str]) -> bytes:
    """In a forked worker: one job, with the Hydra context, config and task function the worker
    inherited; its JobReturn, cloudpickled (it holds config classes the standard pickle cannot name)."""
    from joblib.externals import cloudpickle

    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    return cloudpickle.dumps(execute_job(index, list(overrides), **INHERITED))


def run_in_forked_workers(count: int, jobs: list[tuple[int, list[str]]]) -> list[bytes]:
    """Each job's cloudpickled JobReturn, in order, from `count` workers forked now, one job at a time.

    Not multiprocessing.Pool or concurrent.futures: a Pool whose worker dies (an OOM kill) waits forever
    for that worker's job, and its terminate() can deadlock on a queue lock a worker leaves held when
    SIGTERM interrupts it (seen under load); ProcessPoolExecutor's threads join the workers at exit,
    so a SIGTERM to the sweep would wait for the jobs under way. Here each worker has its own pipe and
    this process stays single-threaded, watching pipes and process sentinels: a dead worker stops the
    sweep with one line (the sweep's exit handler then ends its unfinished runs and the parent KILLED,
    and the same sweep with tracking.skip_finished=true tracking.resume=true runs only what is
    missing); on Ctrl-C or SIGTERM the workers are stopped at once, which ends their runs KILLED."""
    context = multiprocessing.get_context("fork")
    workers = []
    for _ in range(count):
        ours, theirs = context.Pipe()
        process = context.Process(target=serve_jobs, args=(theirs,), daemon=True)
        process.start()
        theirs.close()
        workers.append(Worker(process, ours))
    pending = list(enumerate(jobs))
    returned: dict[int, bytes] = {}
    busy: dict[int, Worker] = {}
    finished = False
    try:
        while pending or busy:
            for worker in workers:
                if pending and worker not in busy.values():
                    position, job = pending.pop(0)
                    worker.connection.send(job)
                    busy[position] = worker
            ready = set(wait([w.connection for w in busy.values()] + [w.process.sentinel for w in busy.values()]))
            for position, worker in list(busy.items()):
                if worker.connection in ready:
                    try:
                        returned[position] = worker.connection.recv()
                        del busy[position]
                        continue
                    except (EOFError, OSError):
                        pass
                if worker.connection in ready or worker.process.sentinel in ready:
                    worker.process.join(timeout=5)
                    died(worker.process, jobs[position])
        finished = True
    finally:
        for worker in workers:
            if finished:
                with contextlib.suppress(OSError):  # a worker killed while idle: its jobs are all done
                    worker.connection.send(None)  # no more jobs
            elif worker.process.is_alive():
                worker.process.terminate()  # a job under way ends its run KILLED (src.errors.stop_on_sigterm)
        if not finished:
            from src.sweep import continue_stopped_workers

            continue_stopped_workers()  # a stopped worker takes its SIGTERM only once continued
        for worker in workers:
            worker.process.join(timeout=30)
    return [returned[position] for position in range(len(jobs))]


@dataclass(frozen=True)
class Worker:
    process: BaseProcess
    connection: Connection


def serve_jobs(connection: Connection) -> None:
    """In a forked worker: run each job received until the sweep says there are no more. A kill -9 of
    the sweep kills its workers too."""
    from src.training_process import die_with_parent

    die_with_parent()
    try:
        while True:
            job = connection.recv()
            if job is None:
                return
            index, overrides = job
            connection.send(run_inherited_job(index, overrides))
    except KeyboardInterrupt:  # stopped by the sweep (Ctrl-C, SIGTERM): the job has ended its run KILLED
        return


def died(process: BaseProcess, job: tuple[int, list[str]]) -> NoReturn:
    code = process.exitcode
    how = "still running" if code is None else f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    print(
        f"error: a sweep worker died (pid {process.pid}, {how}) during job {job[0]} ({' '.join(job[1])}): "
        "the sweep stopped and its unfinished runs end KILLED; run it again with tracking.skip_finished=true "
        "tracking.resume=true to run only what is missing",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(2)
