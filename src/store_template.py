"""New SQLite stores from a migrated empty schema, made once per MLflow version on this machine.

MLflow builds a new SQLite store by running every schema migration in turn (some 60 of them, each
rewriting tables): about 4.5 s on the 2-core machine, paid by every first run into a new store (a
project's first run, a sweep or a test into a fresh folder). The result is the same file each time,
less the Default experiment MLflow adds (its artifact location depends on the folder it was created
from). So the migrations run once, the Default experiment is taken out, and the file is kept in the
user's cache folder ($XDG_CACHE_HOME/rnnlab, else ~/.cache/rnnlab) under the MLflow version's name;
a new store is a copy of it, to which MLflow adds its Default experiment as it opens it (about 0.2 s).
Where the cache cannot be written, the store is migrated in place as before. MLflow checks the schema
version of every store it opens, so a template that did not match it could not go unnoticed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
from pathlib import Path

import mlflow

log = logging.getLogger(__name__)


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rnnlab"


def template_path() -> Path:
    return cache_folder() / f"mlflow-{mlflow.__version__}-empty-store.db"


def migrate(database: Path) -> None:
    """MLflow's own creation of a store: every migration, then its Default experiment."""
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{database}").search_experiments(max_results=1)


def copy_template(target: Path) -> bool:
    """Write a migrated empty store to `target` (a new file); False where no template can be had here,
    and nothing is written."""
    try:
        template = ensure_template()
        shutil.copyfile(template, target)
    except OSError as error:
        log.debug("no store template (%s): migrating the new store in place", error)
        return False
    return True


def ensure_template() -> Path:
    """The template for this MLflow version, made under a lock by the first process that needs it and
    renamed into place whole, so that processes started together wait for one set of migrations."""
    template = template_path()
    if template.is_file():
        return template
    from filelock import FileLock

    template.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{template}.lock", timeout=300):
        if template.is_file():
            return template
        for stale in template.parent.glob(f".{template.name}.*"):  # a process killed while migrating
            stale.unlink(missing_ok=True)  # (only the lock's holder writes one)
        scratch = template.with_name(f".{template.name}.{os.getpid()}")
        try:
            migrate(scratch)
            with contextlib.closing(sqlite3.connect(scratch)) as connection, connection:
                connection.execute("DELETE FROM experiments")  # MLflow adds its Default one to each copy
            os.replace(scratch, template)
        finally:
            scratch.unlink(missing_ok=True)
    return template
