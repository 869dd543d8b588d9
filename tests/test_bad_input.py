"""Bad input, table-driven: each case exits non-zero with one line and no traceback, and leaves no run
RUNNING (most leave no run at all)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from src.paths import PROJECT_ROOT
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

QUICK = ["trainer=quick", "framework=numpy", "tracking.log_model=false"]

# (overrides, what the one line starts with); "{tmp}" is the test's folder. Exit 2 for all of these.
CASES = [
    (["model.hidden_size=0"], "error: model.hidden_size=0 is invalid"),
    (["model.hidden_size=100000"], "error: model.hidden_size=100000 is invalid"),
    (["model.num_layers=0"], "error: model.num_layers=0 is invalid"),
    (["model.num_layers=1000"], "error: model.num_layers=1000 is invalid"),
    (["model.dropout=1.5"], "error: model.dropout=1.5 is invalid"),
    (["model=lstm", "model.activation=relu"], "error: model.activation='relu' is invalid"),
    (["trainer.lr=-1"], "error: trainer.lr=-1.0 is invalid"),
    (["trainer.lr=nan"], "error: trainer.lr=nan is invalid"),
    (["trainer.lr=inf"], "error: trainer.lr=inf is invalid"),
    (["trainer.epochs=0"], "error: trainer.epochs=0 is invalid"),
    (["trainer.epochs=99999999999"], "error: trainer.epochs=99999999999 is invalid"),
    (["trainer.batch_size=0"], "error: trainer.batch_size=0 is invalid"),
    (["trainer.batch_size=100000"], "error: trainer.batch_size=100000 is invalid"),
    (["trainer.grad_clip=-1"], "error: trainer.grad_clip=-1.0 is invalid"),
    (["trainer.patience=-1"], "error: trainer.patience=-1 is invalid"),
    (["trainer.seed=-1"], "error: trainer.seed=-1 is invalid"),
    (["trainer.seed=4294967296"], "error: trainer.seed=4294967296 is invalid"),
    (["trainer.checkpoint_every=-1"], "error: trainer.checkpoint_every=-1 is invalid"),
    (["framework.threads=100000"], "error: framework.threads=100000 is invalid"),
    (["framework.threads=-1"], "error: framework.threads=-1 is invalid"),
    (["framework.device=cuda:7"], "error: framework.device='cuda:7'"),
    (["framework.device=tpu"], "error: framework.device='tpu' is invalid"),
    (["+trainer.momentum=0.9"], "error: trainer.momentum=0.9 is invalid: is not a config key"),
    (["+foo=1"], "error: foo=1 is invalid: is not a config key"),
    # A group given no option (Hydra's traceback) or a list of them (the schema's defaults, silently).
    (["trainer=null"], "error: trainer=null is invalid: trainer takes one of default, quick"),
    (["model=[]"], "error: model=[] is invalid: model takes one of gru, lstm, rnn"),
    (["~dataset"], "error: ~dataset is invalid: dataset takes one of "),
    (["dataset=sum", "dataset.high=1e300"], "error: dataset sum produced values that are not finite"),
    (["dataset=sum", "dataset.low=-inf"], "error: dataset.low=-inf is invalid"),
    (
        ["dataset=sum", "dataset.num_samples=1000000000"],
        "error: dataset.num_samples=1000000000 with dataset.seq_len=10 is invalid",
    ),
    (["dataset=adding", "dataset.seq_len=1"], "error: dataset.seq_len=1 is invalid"),
    (
        ["dataset=chars", "dataset.path=/dev/zero", "dataset.max_chars=1000"],
        "error: dataset.path='/dev/zero': not a regular file",
    ),
    (["dataset=chars", "dataset.path={tmp}/fifo"], "error: dataset.path='{tmp}/fifo': not a regular file"),
    (["dataset=chars", "dataset.path={tmp}/empty.txt"], "error: dataset.path='{tmp}/empty.txt' is invalid"),
    (["dataset=chars", "dataset.path={tmp}/missing.txt"], "error: dataset.path='{tmp}/missing.txt': no such file"),
    (["dataset=chars", "dataset.path={tmp}"], "error: dataset.path='{tmp}': is a directory"),
    (["dataset=chars", "dataset.path={tmp}/binary.bin"], "error: dataset.path='{tmp}/binary.bin': not UTF-8 text"),
    (["tracking.uri=foo://bar"], "error: tracking.uri='foo://bar' is invalid"),
    (["tracking.uri=sqlite://tmp/x.db"], "error: tracking.uri='sqlite://tmp/x.db' is invalid"),
    (["tracking.uri=sqlite:///{tmp}/garbage.db"], "error: cannot use the tracking store sqlite:///{tmp}/garbage.db"),
    (
        ["tracking.uri=sqlite:///{tmp}/truncated.db"],
        "error: cannot use the tracking store sqlite:///{tmp}/truncated.db",
    ),
    (
        ["tracking.uri=sqlite:///{tmp}/future.db"],
        "error: cannot use the tracking store sqlite:///{tmp}/future.db: its schema (revision ffffffffffff) is newer "
        "than this MLflow",
    ),
    (["tracking.uri=http://127.0.0.1:9"], "error: tracking server http://127.0.0.1:9 is unreachable"),
    # urllib's own errors (a traceback, exit 1, before the run looked at the URI beyond its scheme)
    (['tracking.uri="http://[::1"'], "error: tracking.uri='http://[::1' is invalid: Invalid IPv6 URL"),
    (["tracking.uri=http://127.0.0.1:99999"], "error: tracking.uri='http://127.0.0.1:99999' is invalid: Port out of"),
    (["tracking.uri=http://:5000"], "error: tracking.uri='http://:5000' is invalid: it names no host"),
    (["tracking.uri=http://alice:pw@127.0.0.1:9"], "error: tracking.uri carries a password"),
    (["trainer.lr=${oc.env:RNNLAB_NO_SUCH_VARIABLE}"], "error: invalid config:"),
    (["tracking.experiment= "], "error: tracking.experiment='' is invalid"),
    # A param of more than 6000 characters is cut by MLflow with a warning: the run's params lost its name.
    (["tracking.run_name=" + "r" * 501], "error: tracking.run_name='" + "r" * 40 + "...' is invalid: must be at most"),
    (["objective=nope"], "error: objective='nope' is invalid"),
    (["objective=test_bpc"], "error: objective='test_bpc' is invalid"),
    (["hydra.run.dir=/proc/no/such/folder"], "error: hydra.run.dir='/proc/no/such/folder': cannot write"),
    (
        ["tracking.uri=sqlite:///{tmp}/blocked/mlflow.db"],
        "error: cannot create the checkpoint folder {tmp}/blocked/checkpoints",
    ),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    os.mkfifo(folder / "fifo")
    (folder / "empty.txt").write_text("")
    (folder / "binary.bin").write_bytes(b"\xff\xfe\x00\x81" * 100)
    (folder / "garbage.db").write_bytes(b"this is not a database" * 100)
    (folder / "blocked").mkdir()
    (folder / "blocked" / "checkpoints").write_text("a file where the checkpoint folder should be")
    store = folder / "whole.db"
    from src.tracking import open_client

    open_client(f"sqlite:///{store}")
    (folder / "truncated.db").write_bytes(store.read_bytes()[:20000])
    (folder / "future.db").write_bytes(store.read_bytes())
    with sqlite3.connect(folder / "future.db") as connection:  # as a newer MLflow would leave it
        connection.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    return folder


@pytest.mark.parametrize("overrides, expected", CASES, ids=[" ".join(case[0]) for case in CASES])
def test_bad_input_exits_2_with_one_line_and_creates_no_run(inputs, tmp_path, overrides, expected) -> None:
    store = tmp_path / "mlflow.db"
    arguments = [*QUICK, f"tracking.uri=sqlite:///{store}", f"hydra.run.dir={tmp_path / 'out'}"]
    arguments += [override.replace("{tmp}", str(inputs)) for override in overrides]
    result = run_cli(*arguments, timeout=180)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert lines and lines[-1].startswith(expected.replace("{tmp}", str(inputs))), lines[-1:]
    if store.exists():
        with sqlite3.connect(store) as connection:
            statuses = [row[0] for row in connection.execute("SELECT status FROM runs")]
        assert statuses == []


SWEEP_COUNT_CASES = [
    (["hydra/launcher=joblib_local", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0 is invalid: must be a whole"),
    (["hparams_search=optuna", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 is invalid: must be a whole"),
    (["hparams_search=optuna", "hydra.sweeper.n_trials=-1"], "hydra.sweeper.n_trials=-1 is invalid: must be a"),
    (["hparams_search=optuna", "hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs=0 is invalid: must be a whole"),
]


@pytest.mark.parametrize(
    "overrides, expected", SWEEP_COUNT_CASES, ids=[" ".join(case[0]) for case in SWEEP_COUNT_CASES]
)
def test_a_sweep_count_its_plugin_refuses_exits_2_before_the_parent_run(tmp_path, overrides, expected) -> None:
    """joblib and Optuna refused these once the sweep's parent run existed: a traceback, exit 1, and an
    empty parent left KILLED in the store."""
    store, sweep = tmp_path / "mlflow.db", tmp_path / "sweep"
    result = run_cli("-m", *QUICK, "trainer.seed=0,1", *overrides, f"tracking.uri=sqlite:///{store}",
                     f"hydra.sweep.dir={sweep}", timeout=180)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {expected}"), line
    assert not store.exists() and not sweep.exists()


def test_a_sqlite_database_that_is_not_a_store_is_refused_and_left_as_it_was(tmp_path) -> None:
    """Not garbage, someone's database: MLflow would add its ~50 tables to it (it did, exit 0)."""
    database = tmp_path / "notes.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.execute("INSERT INTO notes VALUES ('mine')")
    before = database.read_bytes()
    for sweep in ([], ["-m", "trainer.seed=0,1"]):
        result = run_cli(*sweep, *QUICK, f"tracking.uri=sqlite:///{database}", f"hydra.run.dir={tmp_path / 'out'}",
                         f"hydra.sweep.dir={tmp_path / 'sweep'}")  # fmt: skip
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert (
            result.stderr.strip()
            .splitlines()[-1]
            .endswith(
                f"{database} is a SQLite database but not an MLflow tracking store (its tables: notes); give "
                "tracking.uri a new file or an existing MLflow store"
            )
        )
    assert database.read_bytes() == before


@pytest.mark.parametrize("override", ["trainer.epochs=abc", "model.cell=xyz", "dataset=nope", "optimiser=adam"])
def test_hydra_composition_errors_name_the_key_without_a_traceback(tmp_path, override) -> None:
    result = run_cli(*QUICK, f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", override)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert override.split("=")[0].split(".")[-1] in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def read_only(folder: Path, *command: str) -> subprocess.CompletedProcess:
    """`command` with `folder` mounted read-only in a private mount namespace (a read-only disk, even
    for root, whom permissions do not stop)."""
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && ' + " ".join(
        f"'{part}'" for part in command
    )
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )


needs_mounts = pytest.mark.skipif(
    shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0,
    reason="needs unshare -m (root) to mount a folder read-only",
)


@needs_mounts
def test_a_read_only_store_is_read_by_compare_and_refused_by_train_in_one_line(tmp_path) -> None:
    """Readers read a store on a read-only disk; whatever would write there (a run, the sweep summary
    compare logs to a sweep's parent, cleanup ending a run) is one line or a note, never a traceback."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    swept = run_cli("-m", *QUICK, "dataset=sum", "trainer.seed=0,1", f"tracking.uri={uri}")
    assert swept.returncode == 0, swept.stderr[-2000:]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("rnnlab").experiment_id
    (parent,) = [run for run in client.search_runs([experiment]) if run.data.tags.get("sweep") == "parent"]
    abandoned = client.create_run(experiment).info.run_id  # RUNNING, no heartbeat: only --stale-minutes ends it
    before = (tmp_path / "mlflow.db").read_bytes()
    train = read_only(tmp_path, sys.executable, "-m", "src.train", *QUICK, "dataset=sum", f"tracking.uri={uri}")
    assert train.returncode == 2 and "Traceback" not in train.stderr, train.stderr[-2000:]
    assert train.stderr.strip().splitlines()[-1].startswith("error: ")
    for target in ("rnnlab", parent.data.tags["sweep_id"]):
        compare = read_only(
            tmp_path, sys.executable, "-m", "src.compare", target, "--tracking-uri", uri, "--output", str(OUTSIDE_PNG)
        )
        assert compare.returncode == 0 and not compare.stderr.strip(), compare.stderr[-2000:]
        assert f"comparison plot: {OUTSIDE_PNG}" in compare.stdout
    assert compare.stdout.splitlines()[-1] == (
        f"not logged to the sweep's parent run {parent.info.run_id}: the tracking store is read-only"
    )
    cleanup = read_only(
        tmp_path, sys.executable, "-m", "src.runs", "cleanup", "--stale-minutes", "0.0001", "--tracking-uri", uri
    )
    assert cleanup.returncode == 2 and cleanup.stderr.strip().splitlines() == [
        f"error: cannot clean up {uri}: attempt to write a readonly database"
    ], cleanup.stderr[-2000:]
    search = read_only(
        tmp_path, sys.executable, "-m", "src.train", "-m", "hparams_search=optuna", *QUICK, f"tracking.uri={uri}",
        f"hydra.sweep.dir={tmp_path.parent / (tmp_path.name + '-search')}",  # outside the read-only mount
    )  # fmt: skip
    assert search.returncode == 2 and "Traceback" not in search.stderr, search.stderr[-2000:]
    assert search.stderr.strip().splitlines()[-1].startswith("error: cannot lock the Optuna study's journal")
    assert (tmp_path / "mlflow.db").read_bytes() == before
    assert client.get_run(abandoned).info.status == "RUNNING"
    # The database writable, its artifact folder not: compare wrote the parent's metrics and tags, then
    # failed at its leaderboard, so the parent named a best run its artifacts did not show.
    compare = read_only(
        tmp_path / "mlartifacts", sys.executable, "-m", "src.compare", parent.data.tags["sweep_id"], "--tracking-uri",
        uri, "--output", str(OUTSIDE_PNG),
    )  # fmt: skip
    assert compare.returncode == 0 and not compare.stderr.strip(), compare.stderr[-2000:]
    assert compare.stdout.splitlines()[-1].startswith(
        f"not logged to the sweep's parent run {parent.info.run_id}: the tracking store refused the write"
    ), compare.stdout[-2000:]
    assert len(client.get_metric_history(parent.info.run_id, "jobs")) == 1  # the sweep's own, not compare's
    ended = run_cli("cleanup", "--stale-minutes", "0.0001", "--tracking-uri", uri, module="src.runs")
    assert ended.returncode == 0 and ended.stdout.splitlines()[-1] == "1 dead run(s) ended", ended.stderr[-2000:]
    assert client.get_run(abandoned).info.status == "KILLED"  # the same store, writable again


OUTSIDE_PNG = Path(tempfile.gettempdir()) / "rnnlab-read-only-compare.png"


@needs_mounts
def test_an_artifact_folder_that_cannot_be_written_is_refused_before_any_run(tmp_path) -> None:
    """The database takes runs, its artifact folder (mlartifacts/ beside it) is on a read-only disk: a run
    failed at its first artifact, after the run was made, with a traceback and exit 1."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = tmp_path / "mlartifacts"
    artifacts.mkdir()
    expected = (
        f"error: cannot use the tracking store {uri}: its artifact folder {artifacts} cannot be written "
        "(Read-only file system)"
    )
    train = read_only(artifacts, sys.executable, "-m", "src.train", *QUICK, "dataset=sum", f"tracking.uri={uri}")
    assert train.returncode == 2 and train.stderr.strip().splitlines() == [expected], train.stderr[-2000:]
    sweep = read_only(
        artifacts, sys.executable, "-m", "src.train", "-m", *QUICK, "dataset=sum", "trainer.seed=0,1",
        f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
    )  # fmt: skip
    assert sweep.returncode == 2, sweep.stderr[-2000:]
    assert sweep.stderr.strip().splitlines()[-1].endswith(expected.removeprefix("error: ")), sweep.stderr[-2000:]
    client = MlflowClient(uri)
    assert client.search_runs([client.get_experiment_by_name("rnnlab").experiment_id]) == []


@needs_mounts
def test_a_read_only_project_folder_fails_in_one_line(tmp_path) -> None:
    result = read_only(
        PROJECT_ROOT,
        sys.executable,
        "-m",
        "src.train",
        *QUICK,
        "dataset=sum",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: hydra.run.dir=") and "Read-only file system" in last
