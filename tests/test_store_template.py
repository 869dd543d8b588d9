"""New SQLite stores are copies of a migrated empty schema kept per MLflow version (src/store_template.py):
MLflow's 60-odd migrations ran for every new store (about 4.5 s a first run, a sweep or a test into a
fresh folder). The copy must be the store MLflow would have made, made once, and safe under kills."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import mlflow.store.db.utils
import pytest
from mlflow import MlflowClient

from src.paths import PROJECT_ROOT
from src.store_template import ensure_template, template_path
from src.tracking import ensure_experiment, open_client
from tests.conftest import run_cli

SMALL = ["framework=numpy", "dataset=sum", "dataset.num_samples=300", "model.hidden_size=8", "trainer=quick",
         "tracking.log_model=false"]  # fmt: skip


def schema(database: Path) -> list[tuple]:
    """Every table, index and trigger with its SQL's lines sorted: MLflow's own migrations write a
    table's constraints in an order that varies from one run of them to the next."""
    with closing(sqlite3.connect(database)) as connection:
        found = connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return sorted(
        (kind, name, table, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
        for kind, name, table, sql in found
    )


def rows(database: Path, table: str) -> list[tuple]:
    with closing(sqlite3.connect(database)) as connection:
        return connection.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608  # a fixed name


def test_a_new_store_is_the_store_mlflow_migrates_with_its_own_default_experiment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    migrated = tmp_path / "migrated" / "mlflow.db"
    migrated.parent.mkdir()
    monkeypatch.chdir(migrated.parent)
    MlflowClient(f"sqlite:///{migrated}").search_experiments()  # MLflow alone: every migration

    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    ensure_template()

    def no_migrations(engine) -> None:
        raise AssertionError("a new store ran MLflow's migrations instead of copying the template")

    monkeypatch.setattr(mlflow.store.db.utils, "_initialize_tables", no_migrations)
    for database in (first, second):
        database.parent.mkdir()
        monkeypatch.chdir(database.parent)
        ensure_experiment(f"sqlite:///{database}", "rnnlab")
    template = template_path()
    assert template.is_file() and template.parent == tmp_path / "cache" / "rnnlab"
    assert rows(template, "experiments") == []  # MLflow adds the Default experiment to each copy
    for database in (first, second):
        assert schema(database) == schema(migrated)
        assert rows(database, "alembic_version") == rows(migrated, "alembic_version")
        assert rows(database, "workspaces") == rows(migrated, "workspaces")
        default = MlflowClient(f"sqlite:///{database}").get_experiment("0")
        assert default.name == "Default"
        assert default.artifact_location == str(database.parent / "mlruns" / "0")  # where it was created from
        experiment = MlflowClient(f"sqlite:///{database}").get_experiment_by_name("rnnlab")
        assert experiment.artifact_location == (database.parent / "mlartifacts").as_uri()
    assert not list(template.parent.glob(f".{template.name}.*"))  # no scratch file left


def test_without_a_writable_cache_the_store_is_migrated_in_place(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # its rnnlab/ cannot be made
    database = tmp_path / "mlflow.db"
    client = open_client(f"sqlite:///{database}")
    assert [experiment.name for experiment in client.search_experiments()] == ["Default"]
    assert not template_path().exists()


def test_a_run_killed_while_the_template_is_made_leaves_neither_and_the_next_run_makes_both(tmp_path) -> None:
    cache = tmp_path / "cache"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    environment = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    process = subprocess.Popen(
        [sys.executable, "-m", "src.train", *SMALL, f"tracking.uri={uri}"],
        cwd=PROJECT_ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None and not list((cache / "rnnlab").glob(".mlflow-*-empty-store.db.*")):
            assert time.monotonic() < deadline, "no template was being made after 120 s"
            time.sleep(0.01)  # the migrations take seconds
        assert process.poll() is None, "the run ended before its store's template was being made"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert not (tmp_path / "mlflow.db").exists() and not list((cache / "rnnlab").glob("*.db"))
    again = run_cli(*SMALL, f"tracking.uri={uri}", env={"XDG_CACHE_HOME": str(cache)})
    assert again.returncode == 0, again.stderr[-2000:]
    assert [path.name for path in (cache / "rnnlab").glob("*.db")] == [template_path().name]
    assert not list((cache / "rnnlab").glob(".*.db.*"))  # the killed run's scratch file is gone
    client = MlflowClient(uri)
    runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    assert [run.info.status for run in runs] == ["FINISHED"]


# src.train, killed by itself once the template is copied to the new store's temporary file and opened.
KILLED_AFTER_COPY = """
import os, runpy, signal, sys
import src.store_template as store_template

copy = store_template.store_from_template

def copy_then_die(target):
    copied = copy(target)
    os.kill(os.getpid(), signal.SIGKILL)
    return copied

store_template.store_from_template = copy_then_die
sys.argv = ["src.train", *sys.argv[1:]]
runpy.run_module("src.train", run_name="__main__", alter_sys=True)
"""


def test_a_run_killed_while_its_store_is_copied_leaves_no_store_and_the_next_run_makes_it(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cut = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_COPY, *SMALL, f"tracking.uri={uri}"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cut.returncode == -signal.SIGKILL, cut.stderr[-2000:]
    assert list(tmp_path.glob(".mlflow.db.creating-*")) and not (tmp_path / "mlflow.db").exists()
    again = run_cli(*SMALL, f"tracking.uri={uri}")
    assert again.returncode == 0, again.stderr[-2000:]
    client = MlflowClient(uri)
    runs = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()])
    assert [run.info.status for run in runs] == ["FINISHED"]


def new_store_names(database: Path) -> list[str]:
    return [experiment.name for experiment in open_client(f"sqlite:///{database}").search_experiments()]


@pytest.mark.parametrize("damage", ["truncated", "not sqlite", "another database", "an experiment in it"])
def test_a_template_that_is_not_whole_or_not_mlflows_is_made_again(tmp_path, monkeypatch, damage) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    template = ensure_template()
    good = template.read_bytes()
    if damage == "truncated":
        template.write_bytes(good[: len(good) // 3])
    elif damage == "not sqlite":
        template.write_text("not a database")
    elif damage == "another database":
        template.unlink()
        with closing(sqlite3.connect(template)) as connection, connection:
            connection.execute("CREATE TABLE notes (text TEXT)")
    else:
        with closing(sqlite3.connect(template)) as connection, connection:
            connection.execute("INSERT INTO experiments (experiment_id, name) VALUES (7, 'stray')")
    assert new_store_names(tmp_path / "mlflow.db") == ["Default"]
    assert [name for _, name, _, _ in schema(tmp_path / "mlflow.db") if name == "notes"] == []
    assert rows(template, "experiments") == [] and len(rows(template, "alembic_version")) == 1


def test_a_template_mlflow_refuses_is_dropped_and_the_store_migrated_in_place(tmp_path, monkeypatch, caplog) -> None:
    """A template of another schema version under this version's name (an MLflow development build):
    MLflow refuses to open the copy; the store is made the slow way, and the next one remakes the template."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    template = ensure_template()
    with closing(sqlite3.connect(template)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = 'a0000000000b'")
    assert new_store_names(tmp_path / "first.db") == ["Default"]
    assert "no usable store template" in caplog.text and not template.exists()
    assert new_store_names(tmp_path / "second.db") == ["Default"]
    assert template.is_file() and rows(template, "alembic_version") == rows(tmp_path / "second.db", "alembic_version")
    assert not list(tmp_path.glob(".*"))  # no temporary store left


OPEN_A_STORE = "import sys; from src.tracking import open_client; open_client(sys.argv[1])"


def test_processes_making_new_stores_at_once_share_one_template(tmp_path) -> None:
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_A_STORE, f"sqlite:///{tmp_path / f'store{index}.db'}"],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for index in range(3)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    assert all("no usable store template" not in err for _, err in outputs)
    assert len(list((tmp_path / "cache" / "rnnlab").glob("*.db"))) == 1
    for index in range(3):
        assert new_store_names(tmp_path / f"store{index}.db") == ["Default"]
