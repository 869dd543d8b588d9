"""The MLflow run: where it is stored, what it records, and how it ends.

A `TrackedRun` ends FINISHED when its block succeeds, FAILED on an exception (the reason in the
`error` tag) and KILLED on Ctrl-C; metrics already logged always stay.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from src.data.base import Splits
from src.errors import TrackingUnavailable, UserError, check_interrupted
from src.frameworks.checkpoint import EpochResult
from src.paths import PROJECT_ROOT, probe_writable
from src.uris import is_server, one_line, redact, sqlite_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from src.predictor import SavedPredictor

log = logging.getLogger(__name__)

# A server that hangs or dies must stop a run in well under a minute, not after MLflow's defaults
# (120 s per request, 7 retries with exponential backoff: many minutes). Each request now gives up
# after 10 s and is retried twice, 1 s and 2 s apart: at most about 35 s for one call.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
}
MLFLOW_DEFAULTS = {
    **HTTP_DEFAULTS,
    # MLflow's artifact progress bars are noise in logs.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # Asynchronous epoch metrics go to the store in batches each second; without a buffering interval
    # MLflow's logging thread blocks in a 1 s queue wait that end_run then sits through (benchmarks/).
    "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS": "1",
}


def apply_mlflow_defaults() -> None:
    """Our defaults for MLflow's environment settings, set before this process first talks to a store;
    a user's own values win. (MLflow reads them at each call, so setting them here is early enough.)"""
    for name, value in MLFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # MLflow logs a database error with its traceback before raising it (a full disk: one per failed
    # write); the error itself ends the run in one line (store_errors, server_errors).
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # Likewise a failed background write of epoch metrics (TrackedRun._raise_failed_writes says it), and
    # urllib3's "Retrying ..." for each retry of a server that stopped answering (bounded: HTTP_DEFAULTS).
    logging.getLogger("mlflow.utils.async_logging.async_logging_queue").setLevel(logging.CRITICAL)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    # "Validating input example against model signature" on stderr in every run that logs a model.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)


MODEL_CODE = Path(__file__).with_name("mlflow_model.py")


def check_store_exists(uri: str) -> None:
    """Commands that only read runs must not create a store, nor migrate a file that is not one (an
    empty or foreign file would otherwise get MLflow's schema written into it)."""
    database = sqlite_path(uri)
    if database is None:
        return
    if not database.is_file():
        raise UserError(f"no tracking store at {database} (check --tracking-uri)")
    import sqlite3

    try:
        tables = database_tables(database)
    except sqlite3.Error as error:
        raise UserError(f"{database} is not a readable SQLite tracking store ({error})") from None
    if not MLFLOW_TABLES <= tables:
        raise UserError(f"{database} is not an MLflow tracking store (it lacks MLflow's tables)")


MLFLOW_TABLES = {"alembic_version", "runs", "experiments"}


def database_tables(database: Path) -> set[str]:
    """The tables of a SQLite file, read without writing to it (sqlite3.Error where it is not one)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def refuse_foreign_database(database: Path) -> None:
    """A SQLite file that holds other tables than MLflow's is someone's database: MLflow would add its
    ~50 tables to it. An empty database, or one MLflow made, is fine; one that cannot be read is left
    to fail as it will, with the database's own reason (store_errors)."""
    import sqlite3

    try:
        tables = database_tables(database)
    except sqlite3.Error:
        return
    if tables and not MLFLOW_TABLES <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise UserError(
            f"{database} is a SQLite database but not an MLflow tracking store (its tables: {shown}); "
            f"give tracking.uri a new file or an existing MLflow store"
        )


def keep_credentials_off_screen(uri: str) -> None:
    """MLflow prints "View run at <tracking URI>..." when a run ends: not when that URI has a password."""
    if redact(uri) != uri:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"trainer": {"lr": 0.1}} → {"trainer.lr": 0.1}: the resolved config as MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise creating and migrating a SQLite store, and creating experiments in it, across processes.

    MLflow migrates a new SQLite file on first use; two processes doing that at once corrupt it
    (mlflow#4123), and two creating one experiment race. A file lock beside the database makes first
    use safe for any number of runs, sweeps and DVC stages started at once. A server migrates its own
    store; an experiment two runs create at once there is handled in `ensure_experiment`.
    """
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    from filelock import FileLock

    lock = FileLock(str(database) + ".lock", timeout=300)
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError as error:
        if not database.is_file():
            raise UserError(f"cannot create the tracking store {database} ({error.strerror})") from None
        # A folder nobody can write (a read-only mount): nobody can migrate the store there either,
        # so reading needs no lock, and a write fails on its own, in one line (store_errors).
        yield
        return
    try:
        yield
    finally:
        lock.release()


def store_writable(uri: str) -> bool:
    """Whether this process may write a SQLite store (the file, and its folder for SQLite's journal): not
    on a read-only mount, nor without permission. A server, or any other store, is taken as writable:
    its refusal comes as an error."""
    database = sqlite_path(uri)
    return database is None or (os.access(database, os.W_OK) and os.access(database.parent, os.W_OK))


def open_client(uri: str) -> MlflowClient:
    """An MlflowClient whose store is opened (created and migrated, for a new SQLite file) under the
    store lock, so that no reader or writer ever sees, or migrates, a half-created store. MLflow keeps
    the opened store for the rest of the process."""
    apply_mlflow_defaults()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with store_lock(uri), store_errors(uri):
        database = sqlite_path(uri)
        if database is not None and (not database.exists() or database.stat().st_size == 0):
            create_store(database)
        elif database is not None:
            refuse_foreign_database(database)
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)
    return client


def fork_safe_connections() -> None:
    """Never use a database connection a parent process opened: after this, a connection pooled by
    SQLAlchemy (MLflow's store, Optuna's storage) is only handed out in the process that opened it; a
    forked worker (hydra_plugins/rnnlab/joblib_launcher.py) drops an inherited one and opens its own.
    SQLite forbids carrying a connection across fork; this is SQLAlchemy's recipe for it."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    global _FORK_SAFE_SINCE_PID
    if not event.contains(Pool, "checkout", _refuse_inherited_connection):
        _FORK_SAFE_SINCE_PID = os.getpid()
        event.listen(Pool, "connect", _remember_opener)
        event.listen(Pool, "checkout", _refuse_inherited_connection)


# The process that made connections fork-safe: a connection opened before then was opened there.
_FORK_SAFE_SINCE_PID = 0


def _remember_opener(dbapi_connection: Any, record: Any) -> None:
    record.info["pid"] = os.getpid()


def _refuse_inherited_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    from sqlalchemy.exc import DisconnectionError

    owner = record.info.setdefault("pid", _FORK_SAFE_SINCE_PID)
    if owner != os.getpid():
        record.dbapi_connection = proxy.dbapi_connection = None  # left to the process that opened it
        raise DisconnectionError(f"connection opened by process {owner}, not this one ({os.getpid()})")


def create_store(database: Path) -> None:
    """Create and migrate a new SQLite store in a temporary file, then rename it into place: a process
    killed during MLflow's migrations leaves no store rather than a half-migrated one for good."""
    from src.store_template import open_with_mlflow, store_from_template

    # Names of their own: MLflow keeps every store it opened for the life of the process, by URI.
    unique = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temporary = database.with_name(f".{database.name}.creating-{unique}")
    migrated = database.with_name(f".{database.name}.migrating-{unique}")
    try:
        if store_from_template(temporary):  # src/store_template.py: 0.2 s instead of 3-4 s
            os.replace(temporary, database)
        else:
            open_with_mlflow(migrated)
            os.replace(migrated, database)
    finally:
        temporary.unlink(missing_ok=True)
        migrated.unlink(missing_ok=True)


@contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Opening or first writing to a store: a server's failure is TrackingUnavailable; a local store that is
    not one (garbage, truncated), is read-only or on a full disk is the user's to fix, in one line."""
    with server_errors(uri):
        try:
            yield
        except UserError:
            raise
        except Exception as error:
            if is_server(uri):
                raise
            reason = failure_reason(error)  # the database's own words, not SQLAlchemy's about autoflush
            newer = newer_schema(str(getattr(error, "orig", None) or error))
            if newer is not None:
                reason = (
                    f"its schema (revision {newer}) is newer than this MLflow ({mlflow.__version__}) knows: open "
                    f"it with the MLflow version that wrote it or a later one, not 'mlflow db upgrade'"
                )
            raise UserError(f"cannot use the tracking store {redact(uri)}: {reason}") from None


def newer_schema(message: str) -> str | None:
    """The store's schema revision when MLflow called it out of date but does not know it: a newer
    MLflow wrote the store, and MLflow's advice ('mlflow db upgrade') cannot help."""
    import re

    found = re.search(r"out-of-date database schema \(found version (\w+)", message)
    if found is None:
        return None
    versions = Path(mlflow.__file__).parent / "store" / "db_migrations" / "versions"
    return None if list(versions.glob(f"{found.group(1)}_*.py")) else found.group(1)


def ensure_experiment(uri: str, name: str, artifacts: bool = True) -> str:
    """Create the store and the experiment once, under a lock, so that parallel starts never race.

    With a SQLite store the experiment's artifacts go to `mlartifacts/` beside the database file, not
    to `./mlruns` of whichever directory the first run happened to start in. `artifacts`: the caller
    will log artifacts, so a local artifact folder it cannot write is refused now, before any run.
    """
    apply_mlflow_defaults()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    keep_credentials_off_screen(uri)
    client = open_client(uri)
    with store_lock(uri), store_errors(uri):
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            database = sqlite_path(uri)
            location = (database.parent / "mlartifacts").as_uri() if database else None
            try:
                experiment = client.get_experiment(client.create_experiment(name, artifact_location=location))
            except MlflowException as error:
                # Only a SQLite file is locked here: on a server (or a database store) another run may have
                # created the experiment between the look-up and now. Then it is this run's too.
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
    if artifacts:
        check_artifacts_writable(uri, experiment.artifact_location)
    return experiment.experiment_id


def check_artifacts_writable(uri: str, location: str) -> None:
    """A local artifact folder (a SQLite store's mlartifacts/, a server's that its clients write
    directly) that cannot be written would fail the run at its first artifact, after the run was made."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    if urlparse(location).scheme not in ("", "file"):
        return  # a server's proxied artifacts, object stores: their refusal comes as an error
    folder = Path(local_file_uri_to_path(location))
    try:
        probe_writable(folder)
    except OSError as error:
        raise UserError(
            f"cannot use the tracking store {redact(uri)}: its artifact folder {folder} cannot be written "
            f"({error.strerror})"
        ) from None


def record_failed_run(uri: str, experiment: str, tags: dict[str, str], error: BaseException) -> str:
    """A FAILED run for a sweep job that could not start, so the sweep's comparison shows it."""
    client = MlflowClient(uri)
    # Named here: MLflow's random names would move Python's global `random` state.
    run = client.create_run(
        ensure_experiment(uri, experiment, artifacts=False),  # tags only
        run_name=f"failed-job-{uuid.uuid4().hex[:6]}",
        tags={
            key: redact(value) for key, value in {**tags, "error": f"{type(error).__name__}: {error}"[:5000]}.items()
        },
    )
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


def descriptive_name(tags: Mapping[str, str]) -> str:
    """framework-cell-dataset-xxxx: readable in the UI, and unlike MLflow's own random names it
    leaves Python's global `random` state alone (a seeded notebook keeps its stream)."""
    parts = [tags[key] for key in ("framework", "cell", "dataset") if tags.get(key)]
    return "-".join([*parts, uuid.uuid4().hex[:4]])


HEARTBEAT_SECONDS = 10.0
EPOCH_METRICS = ("train_loss", "val_loss", "epoch_seconds")


@contextmanager
def server_errors(uri: str) -> Iterator[None]:
    """Any failure of a tracking server inside the block, or a database store that can no longer be
    written (a full disk, an I/O error, a file gone read-only), becomes TrackingUnavailable: one line,
    the store named, no secret. Other errors of a local store stay what they are."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        failed = store_failure(uri, error)
        if failed is None:
            raise
        raise failed from error


def store_failure(uri: str, error: BaseException) -> TrackingUnavailable | None:
    """`error` as the store's failure, or None where it is not one (a bug, a refused value)."""
    if is_server(uri):
        where = f"tracking server {redact(uri)}"
    elif _database_failed(error):
        where = f"tracking store {redact(uri)}"
    elif _disk_failed(error):  # the local artifact folder: the database still works
        return TrackingUnavailable(f"tracking store {redact(uri)} failed ({failure_reason(error)})", runs_writable=True)
    else:
        return None
    return TrackingUnavailable(f"{where} failed ({failure_reason(error)})")


# A disk that refuses a write: full, read-only, failing, or not this user's.
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}


def _disk_failed(error: BaseException | None) -> bool:
    """A store call failed on the local disk (MLflow's local artifact repository writes files)."""
    for _ in range(10):
        if error is None:
            return False
        if isinstance(error, OSError) and error.errno in _DISK_ERRORS:
            return True
        error = error.__cause__ or error.__context__
    return False


def failure_reason(error: BaseException) -> str:
    """A store's error in one line: the database's own words where a database failed (SQLAlchemy and
    MLflow wrap them in lines about autoflush and sessions), else the error's first line."""
    cause = _database_error(error) or error
    cause = getattr(cause, "orig", None) or cause  # SQLAlchemy keeps the database's own message there
    return one_line(cause)


def _database_failed(error: BaseException) -> bool:
    """The database refused to work (SQLAlchemy's OperationalError, which MLflow re-raises as
    TEMPORARILY_UNAVAILABLE): SQLite's "database or disk is full", "disk I/O error", "attempt to write
    a readonly database", "unable to open database file"; a database server that went away."""
    return _database_error(error) is not None or getattr(error, "error_code", "") == "TEMPORARILY_UNAVAILABLE"


def _database_error(error: BaseException | None) -> BaseException | None:
    """The database's OperationalError among `error`'s causes, if any."""
    for _ in range(10):
        if error is None or type(error).__name__ == "OperationalError":
            return error
        error = error.__cause__ or error.__context__
    return None


# MLflow's SQL store looks a dataset up by (experiment, name, digest) and inserts it when absent: two runs
# of one experiment logging the same data at the same moment can both find it absent, and the second
# insert breaks the unique constraint. Logging again then finds the first run's row.
DATASET_ATTEMPTS = 3
_DUPLICATE_ROW = re.compile(r"unique constraint|UniqueViolation|IntegrityError|Duplicate entry", re.IGNORECASE)


def _is_duplicate(error: BaseException) -> bool:
    """A database refused a row that another writer inserted first (SQLite, PostgreSQL, MySQL wording)."""
    return bool(_DUPLICATE_ROW.search(str(error)))


def _guarded(method):
    """A TrackedRun method whose store calls fail as `server_errors` says; the run then ends locally."""

    @functools.wraps(method)
    def wrapper(self: TrackedRun, *args: Any, **kwargs: Any) -> Any:
        try:
            with server_errors(self.uri):
                return method(self, *args, **kwargs)
        except TrackingUnavailable as failure:
            self._server_failed = not failure.runs_writable
            raise

    return wrapper


class TrackedRun:
    """One MLflow run around a `with` block, owned by this process (heartbeat tags) while it lasts."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str | None,
        tags: dict[str, str],
        run_id: str | None = None,
        parent_run_id: str | None = None,
    ) -> None:
        """With `run_id`, continue that run (a later pipeline stage adding to the run it belongs to, or
        a resumed run); with `parent_run_id`, start a child of that run (a job of a sweep)."""
        self.uri, self.experiment, self.run_name, self.tags = uri, experiment, run_name, tags
        self.run_id = run_id or ""
        self.parent_run_id = parent_run_id
        self.model_uri: str | None = None
        self.experiment_id = ""
        self.logged_steps: dict[str, set[int]] = {}
        self.logged_values: dict[str, float] = {}  # a resumed run's final metrics already in the store
        self._logging_model = False  # between the start and the end of log_model
        self.logged_predictor: str | None = None  # a resumed run's READY model: its predictor files' digest
        self._model_untagged = False  # that model was READY before the run was tagged with it
        self.checkpoint: Path | None = None  # uploaded when the run ends, for a server
        self._last_heartbeat = 0.0
        self._last_epoch: int | None = None
        self._heartbeat_claim = threading.Lock()  # a heartbeat thread and the training thread both beat
        self._heartbeat_failure: Exception | None = None  # the heartbeat thread's, raised at the next epoch
        self._server_failed = False
        self._epoch_writes: list[Future] = []  # MLflow's background writes of epoch metrics, not yet seen done

    @_guarded
    def __enter__(self) -> TrackedRun:
        apply_mlflow_defaults()
        from src.resume import process_tags

        logging.getLogger("alembic").setLevel(logging.WARNING)  # schema migrations of a new store
        keep_credentials_off_screen(self.uri)
        mlflow.set_tracking_uri(self.uri)
        self.experiment_id = ensure_experiment(self.uri, self.experiment)
        mlflow.set_experiment(experiment_id=self.experiment_id)
        commit = git_commit()
        tags = {key: redact(str(value)) for key, value in self.tags.items()}
        if commit:
            tags.update({"git_commit": commit, "mlflow.source.git.commit": commit})
        tags.update(process_tags())
        with store_errors(self.uri):
            if self.run_id:
                # This process's heartbeat first: a run RUNNING under a dead process's tags could be ended
                # KILLED by another job's dead-run cleanup at that moment.
                MlflowClient(self.uri).log_batch(
                    self.run_id, tags=[RunTag(key, value) for key, value in process_tags().items()]
                )
                run = mlflow.start_run(run_id=self.run_id)
                started_at = run.data.tags.get("git_commit")
                if started_at and commit and started_at != commit:
                    # Trained partly at another commit: the run keeps the one it started at, and says
                    # which one it was continued at (a resume after a pull, a fix, a checkout).
                    tags.update({"git_commit": started_at, "mlflow.source.git.commit": started_at})
                    tags["resumed_at_git_commit"] = commit
                    log.warning("run %s was started at commit %s and continues at %s", self.run_id, started_at, commit)
                if "error" in run.data.tags:  # a FAILED run resumed: that failure is over (a new one is tagged)
                    MlflowClient(self.uri).delete_tag(self.run_id, "error")
                if self.parent_run_id:
                    tags["mlflow.parentRunId"] = self.parent_run_id
                mlflow.set_tags(tags)
            else:
                run = mlflow.start_run(
                    run_name=self.run_name or descriptive_name(self.tags), tags=tags, parent_run_id=self.parent_run_id
                )
        self.run_id = run.info.run_id
        self._last_heartbeat = time.monotonic()
        log.info("MLflow run %s in experiment %r at %s", self.run_id, self.experiment, redact(self.uri))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._server_failed or (isinstance(error, TrackingUnavailable) and not error.runs_writable):
            # Every further call would wait for the same dead server: forget the run locally instead.
            # Its process is gone once we exit, so the next resume or cleanup ends it KILLED.
            _forget_active_run()
            return
        swallowed = None
        if kind is None:
            try:
                check_interrupted()
            except KeyboardInterrupt as interruption:
                kind, swallowed = KeyboardInterrupt, interruption
        if kind is None:
            status = RunStatus.to_string(RunStatus.FINISHED)
        elif issubclass(kind, KeyboardInterrupt):
            status = RunStatus.to_string(RunStatus.KILLED)
        else:
            status = RunStatus.to_string(RunStatus.FAILED)
            try:
                mlflow.set_tag("error", redact(f"{kind.__name__}: {error}")[:5000])
            except Exception as failure:  # the reason is a courtesy; ending the run matters more
                log.warning("could not record the error on run %s (%s)", self.run_id, one_line(failure))
        if kind is not None and self._logging_model:
            try:
                self._fail_unfinished_models()
            except Exception as failure:  # as above: ending the run matters more; its resume marks it
                log.warning(
                    "could not mark the unfinished model of run %s FAILED (%s): its resume does",
                    self.run_id,
                    one_line(failure),
                )
        lost: Exception | None = None
        try:
            if kind is None:  # a run that ends FINISHED holds every epoch, or fails saying why it does not
                mlflow.flush_async_logging()
                try:
                    self._raise_failed_writes()
                except Exception as error:
                    if store_failure(self.uri, error) is not None:
                        raise
                    lost, status = error, RunStatus.to_string(RunStatus.FAILED)  # not the store: end it FAILED
                    mlflow.set_tag(
                        "error", redact(f"epoch metrics not written: {type(error).__name__}: {error}")[:5000]
                    )
            self._upload_checkpoint()
            mlflow.end_run(status=status)
        except Exception as failure:
            failed = store_failure(self.uri, failure)
            if failed is None:
                raise
            _forget_active_run()
            if kind is not None:  # the error that ends the run (an interrupt, a failure) is the one to report
                log.warning(
                    "%s while ending run %s %s: the next resume or cleanup ends it", failed, self.run_id, status
                )
                return
            raise TrackingUnavailable(f"{failed} while ending run {self.run_id}") from failure
        if swallowed is not None:
            raise swallowed
        if lost is not None:
            raise lost

    def _upload_checkpoint(self) -> None:
        """A server's run keeps its last checkpoint as an artifact; the local spool copy then goes."""
        if self.checkpoint is None or not is_server(self.uri) or not self.checkpoint.is_file():
            return
        mlflow.log_artifact(str(self.checkpoint), "checkpoint")
        self.checkpoint.unlink(missing_ok=True)

    @_guarded
    def read_logged_steps(self) -> None:
        """A resumed run: the epochs, final metrics and model already in the store, so that none is logged
        twice (a run cut short after training resumes straight into its evaluation: the same numbers and
        the same weights). A model whose logging was cut short (kill -9) is marked FAILED."""
        from src.model_digest import PREDICTOR_DIGEST_TAG

        client = MlflowClient(self.uri)
        self.logged_steps = {
            name: {point.step for point in client.get_metric_history(self.run_id, name)} for name in EPOCH_METRICS
        }
        run = client.get_run(self.run_id)
        self.logged_values = dict(run.data.metrics)
        ready = self._fail_unfinished_models()
        model_uri = run.data.tags.get("model_uri")
        if model_uri and model_uri.rsplit("/", 1)[-1] in ready:
            self.model_uri = model_uri
            self.logged_predictor = run.data.tags.get(PREDICTOR_DIGEST_TAG)
        elif untagged := {model_id: found for model_id, found in ready.items() if found[0]}:
            # READY, but cut before the run was tagged with it: the model says what it holds.
            model_id = max(untagged, key=lambda found: untagged[found][1])  # the last one logged
            self.logged_predictor = untagged[model_id][0]
            self.model_uri = f"models:/{model_id}"
            self._model_untagged = True

    def _fail_unfinished_models(self) -> dict[str, tuple[str | None, int]]:
        """MLflow creates a logged model PENDING and marks it READY once saved: one whose logging was cut
        short (Ctrl-C, SIGTERM, an error, kill -9) would stay PENDING for ever. FAILED says what it is.
        Returns the run's READY models: id -> (their predictor's digest, None where a model logged before
        models carried it; when created)."""
        from src.model_digest import PREDICTOR_DIGEST_TAG

        client = MlflowClient(self.uri)
        ready = {}
        # (A filter on status matches nothing in MLflow 3.17's SQL store: filtered here.)
        for model in client.search_logged_models(
            [self.experiment_id], filter_string=f"source_run_id = '{self.run_id}'"
        ):
            if model.status == LoggedModelStatus.PENDING:
                client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            elif model.status == LoggedModelStatus.READY:
                ready[model.model_id] = (model.tags.get(PREDICTOR_DIGEST_TAG), model.creation_timestamp)
        return ready

    @_guarded
    def has_tag(self, name: str) -> bool:
        return name in MlflowClient(self.uri).get_run(self.run_id).data.tags

    @_guarded
    def log_params(self, params: Mapping[str, Any], resumed: bool = False) -> None:
        """`resumed`: the run may hold some of them already (it was cut while they were written), and MLflow
        refuses to change a param: those it holds stay. Only keys outside the run key (tracking.resume
        itself) can differ there."""
        held = MlflowClient(self.uri).get_run(self.run_id).data.params if resumed else {}
        mlflow.log_params(
            {key: "None" if value is None else redact(str(value)) for key, value in params.items() if key not in held}
        )

    @_guarded
    def log_epoch(self, result: EpochResult, ended_at: float | None = None) -> None:
        """Asynchronous: epochs go to the store in batches in the background and are flushed at end_run.
        Epochs a resumed run already holds are skipped; a synchronous heartbeat every HEARTBEAT_SECONDS
        says the owner lives, and notices a server that stopped answering. `ended_at` (time.time()) is
        when the epoch ended, where that was in another process; now by default."""
        check_interrupted()
        values = {"train_loss": result.train_loss, "val_loss": result.val_loss, "epoch_seconds": result.seconds}
        missing = {name: value for name, value in values.items() if result.epoch not in self.logged_steps.get(name, ())}
        if missing:
            timestamp = round(ended_at * 1000) if ended_at is not None else None
            writes = mlflow.log_metrics(missing, step=result.epoch, synchronous=False, timestamp=timestamp)
            self._epoch_writes += getattr(writes, "_operation_futures", None) or []  # private; pinned <4
        self._raise_failed_writes()
        self._last_epoch = result.epoch
        self._beat()

    @_guarded
    def heartbeat(self) -> None:
        """The same heartbeat while an epoch lasts (a training process trains it): a long epoch then
        neither looks like a dead run's silence to `src.runs cleanup --stale-minutes` nor hides a server
        that stopped answering until it ends."""
        check_interrupted()
        self._raise_failed_writes()
        self._beat()

    @contextmanager
    def beating(self) -> Iterator[None]:
        """While this process trains in the block (a sweep's job, `trainer.subprocess=false`): the heartbeat
        from a thread, as `heartbeat` gives a run whose training process trains. A write that fails there
        stops the run at its next epoch, as a failed epoch write does."""
        stop = threading.Event()

        def beat_until_stopped() -> None:
            while not stop.wait(HEARTBEAT_SECONDS / 2):
                try:
                    self._beat()
                except Exception as failure:  # the training thread raises it (server_errors words it)
                    self._heartbeat_failure = failure
                    return

        thread = threading.Thread(target=beat_until_stopped, name="rnnlab-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=1.0)  # not for a write to a hanging server: the daemon thread ends with it

    def _beat(self) -> None:
        """Claimed under a lock, written outside it (MLflow's client, not its thread-local active run)."""
        with self._heartbeat_claim:
            if time.monotonic() - self._last_heartbeat < HEARTBEAT_SECONDS:
                return
            self._last_heartbeat = time.monotonic()
            epoch = self._last_epoch
        tags = [RunTag("heartbeat.time", f"{time.time():.3f}")]
        if epoch is not None:
            tags.append(RunTag("heartbeat.epoch", str(epoch)))
        MlflowClient(self.uri).log_batch(self.run_id, tags=tags)

    def _raise_failed_writes(self) -> None:
        """An epoch's metrics that MLflow's background thread could not write (a full disk, a server gone)
        stop the run at the next epoch, in one line: MLflow itself only logs the error and goes on, and
        every later epoch would be lost the same way. So does a heartbeat the heartbeat thread could not write."""
        if self._heartbeat_failure is not None:
            raise self._heartbeat_failure
        pending = []
        for write in self._epoch_writes:
            if not write.done():
                pending.append(write)
            elif write.exception() is not None:
                raise write.exception()  # type: ignore[misc]
        self._epoch_writes = pending

    @_guarded
    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Final metrics (step 0); on a resumed run only those not already logged with this value."""
        fresh = {name: value for name, value in metrics.items() if self.logged_values.get(name) != value}
        if fresh:
            mlflow.log_metrics(fresh)

    @_guarded
    def set_tags(self, tags: Mapping[str, str]) -> None:
        mlflow.set_tags({key: redact(str(value)) for key, value in tags.items()})

    @_guarded
    def log_text(self, text: str, path: str) -> None:
        mlflow.log_text(text, path)

    @_guarded
    def log_figure(self, figure: Figure, path: str) -> None:
        mlflow.log_figure(figure, path)

    @_guarded
    def log_datasets(self, splits: Splits) -> None:
        """Each split as an MLflow dataset input; its digest is a hash of the arrays' content."""
        from mlflow.data.numpy_dataset import from_numpy

        contexts = {"train": "training", "val": "validation", "test": "testing"}
        logged = [(name, split) for name, split in splits.items() if len(split)]
        datasets = [from_numpy(split.x, targets=split.y, name=f"{splits.info.name}-{name}") for name, split in logged]
        if not datasets:
            return
        for attempt in range(1, DATASET_ATTEMPTS + 1):
            try:
                mlflow.log_inputs(
                    datasets=list(datasets),
                    contexts=[contexts[name] for name, _ in logged],
                    tags_list=[None] * len(logged),
                )
                return
            except Exception as error:
                if attempt == DATASET_ATTEMPTS or not _is_duplicate(error):
                    raise
                log.debug("dataset logged by another run at the same moment; logging again (%s)", error)

    @_guarded
    def log_model(self, saved: SavedPredictor) -> str:
        """Log the saved predictor as a pyfunc model; returns (and tags) the URI that loads it. A resumed run
        that logged this very predictor (the same weights' files) before it was cut short keeps that model.

        The run's process needs no framework for it (`SavedPredictor`, `_model_checks_skipped`)."""
        import mlflow.pyfunc

        from src.model_digest import PREDICTOR_DIGEST_TAG, directory_digest
        from src.serving import interface

        weights = directory_digest(saved.directory)
        if self.model_uri is not None and weights == self.logged_predictor:
            if self._model_untagged:
                self._tag_model(self.model_uri, weights)
            return self.model_uri
        served = interface(saved)
        self._logging_model = True
        with _model_checks_skipped():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),
                artifacts={"predictor": str(saved.directory)},
                code_paths=[str(PROJECT_ROOT / "src")],
                signature=served.signature,
                input_example=served.input_example,
                pip_requirements=model_requirements(saved.requirements),
                # The model itself says what it holds: a resume cut before the run's tags below still finds it.
                tags={PREDICTOR_DIGEST_TAG: weights},
            )
        self._tag_model(info.model_uri, weights)
        self.model_uri = info.model_uri
        self._logging_model = False
        return info.model_uri

    def _tag_model(self, model_uri: str, weights: str) -> None:
        from src.model_digest import DIGEST_TAG, PREDICTOR_DIGEST_TAG, logged_model_digest

        mlflow.set_tags(
            {"model_uri": model_uri, DIGEST_TAG: logged_model_digest(model_uri), PREDICTOR_DIGEST_TAG: weights}
        )
        self._model_untagged = False


@contextmanager
def _model_checks_skipped() -> Iterator[None]:
    """Skip two checks MLflow makes while logging a model, each needless here and costly:
    - that this environment satisfies the model's requirements: `model_requirements` pins exactly the
      installed versions, so the check cannot find a mismatch, and it first maps every installed
      distribution to its modules (about 1 s a run, benchmarks/);
    - loading the model back to predict its input example (a failure would be a warning only): that
      imports the framework into a process that otherwise never does (3.6 s of CPU for torch, about
      10 s for TensorFlow, and their memory), while the signature was inferred from the predictor's
      own outputs for that example where it trained (`SavedPredictor`); loading a logged model and
      predicting is tested. MLflow's own flavors switch this one off with `validate_serving_input=False`,
      which `mlflow.pyfunc.save_model` does not take.
    Private MLflow names, pinned <4; the originals are always put back."""
    import mlflow.models.utils
    import mlflow.pyfunc
    from mlflow.utils import environment

    replaced = [
        (environment, "warn_dependency_requirement_mismatches", lambda model_requirements: None),
        (mlflow.pyfunc, "warn_dependency_requirement_mismatches", lambda model_requirements: None),
        (mlflow.models.utils, "_validate_serving_input", lambda model_uri, serving_input: None),
    ]
    originals = [getattr(module, name) for module, name, _ in replaced]
    for module, name, replacement in replaced:
        setattr(module, name, replacement)
    try:
        yield
    finally:
        for (module, name, _), original in zip(replaced, originals):
            setattr(module, name, original)


def _forget_active_run() -> None:
    """Drop the current run from MLflow's in-process stack without a call to the store (MLflow would
    otherwise end it at exit, waiting on the unreachable server again). Private MLflow state, pinned <4."""
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()
    stack.clear()


def model_requirements(backend_requirements: list[str]) -> list[str]:
    """Pinned requirements for loading a model, given here so MLflow need not infer them (slow)."""
    own = [f"{name}=={version(name)}" for name in ("mlflow", "numpy", "hydra-core", "omegaconf")]
    return own + backend_requirements
