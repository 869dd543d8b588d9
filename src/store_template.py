"""New SQLite stores from a migrated empty schema, made once per MLflow version on this machine.

MLflow builds a new SQLite store by running every schema migration in turn (some 60 of them, each
rewriting tables): about 3 s on the 2-core machine (benchmarks/new_store.py), paid by every first
run into a new store (a project's first run, a sweep or a test into a fresh folder). The result is
the same file each time, less the Default experiment MLflow adds (its artifact location depends on
the folder it was created from). So the migrations run once, the Default experiment is taken out,
and the file is kept in the user's cache folder ($XDG_CACHE_HOME/rnnlab, else ~/.cache/rnnlab) under
the MLflow version's name; a new store is a copy of it, to which MLflow adds its Default experiment
as it opens it (about 0.2 s). A template that is not whole or not MLflow's is made again; where the
cache cannot be written, or MLflow refuses the copy (it checks the schema version of every store it
opens), the template is dropped and the store is migrated in place as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

import mlflow

from src.uris import one_line

log = logging.getLogger(__name__)


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rnnlab"


def template_path() -> Path:
    return cache_folder() / f"mlflow-{mlflow.__version__}-empty-store.db"


def open_with_mlflow(database: Path) -> None:
    """Have MLflow open the SQLite file `database`: it runs every migration on a new one and adds its
    Default experiment to one that lacks it (and refuses a schema version it does not know)."""
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{database}").search_experiments(max_results=1)


def store_from_template(target: Path) -> bool:
    """Make `target` (a new file) a store: a copy of the template, opened by MLflow (which checks its
    schema version and adds the Default experiment). False where that fails for any reason (no
    cache folder, a template MLflow refuses, a full disk), with `target` removed and the template too
    (the next store makes it again): the caller then lets MLflow migrate a store in place, which
    reports a real problem with the store's own folder as it always did."""
    try:
        shutil.copyfile(ensure_template(), target)
        open_with_mlflow(target)
    except Exception as error:
        target.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            template_path().unlink(missing_ok=True)
        log.warning("no usable store template (%s): migrating the new store in place", one_line(error))
        return False
    return True


def usable(template: Path) -> bool:
    """A whole SQLite file holding one MLflow schema version and no experiment (else it is made again):
    a truncated or foreign file in the cache must not become anyone's store."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{template}?mode=ro", uri=True)) as connection:
            whole = connection.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            versions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
            experiments = connection.execute("SELECT count(*) FROM experiments").fetchone()[0]
    except sqlite3.Error:
        return False
    return whole and len(versions) == 1 and experiments == 0


def ensure_template() -> Path:
    """The template for this MLflow version, made under a lock by the first process that needs it and
    renamed into place whole, so that processes started together wait for one set of migrations."""
    template = template_path()
    if template.is_file() and usable(template):
        return template
    from filelock import FileLock

    template.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{template}.lock", timeout=300):
        if template.is_file() and usable(template):
            return template
        for stale in template.parent.glob(f".{template.name}.*"):  # a process killed while migrating
            stale.unlink(missing_ok=True)  # (only the lock's holder writes one)
        # A name of its own: MLflow keeps every store it opened for the life of the process, by URI.
        scratch = template.with_name(f".{template.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            open_with_mlflow(scratch)
            with contextlib.closing(sqlite3.connect(scratch)) as connection, connection:
                connection.execute("DELETE FROM experiments")  # MLflow adds its Default one to each copy
            os.replace(scratch, template)
        finally:
            scratch.unlink(missing_ok=True)
    return template
