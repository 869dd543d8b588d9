"""The analysis API (src/runs.py) and `src.compare` over it: on a real store with a real sweep of
2 model sizes × 3 seeds and one run in another experiment."""

from __future__ import annotations

import csv
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from src.paths import PROJECT_ROOT
from src.runs import runs_frame
from tests.conftest import mlflow_server, run_cli

pytestmark = pytest.mark.slow

TINY = ["framework=numpy", "dataset=sum", "dataset.num_samples=200", "trainer=quick", "tracking.log_model=false"]
T_975_2 = 4.3027  # Student's t, 97.5 % quantile, 2 degrees of freedom (from a printed table)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("analysis")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    other = f"other-{uuid.uuid4().hex[:8]}"
    sweep = run_cli("-m", "model.hidden_size=4,8", "trainer.seed=0,1,2", f"tracking.uri={uri}", *TINY)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    single = run_cli(f"tracking.experiment={other}", "model.hidden_size=16", f"tracking.uri={uri}", *TINY)
    assert single.returncode == 0, single.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = next(run for run in runs if run.data.tags.get("sweep") == "parent")
    return {
        "uri": uri,
        "root": root,
        "client": client,
        "parent": parent,
        "sweep_id": parent.data.tags["sweep_id"],
        "jobs": [run for run in runs if run.data.tags.get("sweep_id") and run.data.tags.get("sweep") != "parent"],
        "other": other,
        "other_id": client.get_experiment_by_name(other).experiment_id,
    }


def compare(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    return run_cli(*args, module="src.compare", cwd=cwd, timeout=120)


def test_the_frame_has_one_row_per_run_for_a_name_an_id_a_sweep_and_a_filter(store: dict) -> None:
    uri, jobs = store["uri"], store["jobs"]
    by_name = runs_frame("rnnlab", tracking_uri=uri)
    by_sweep = runs_frame(store["sweep_id"], tracking_uri=uri)
    assert sorted(by_name["run_id"]) == sorted(by_sweep["run_id"]) == sorted(run.info.run_id for run in jobs)
    by_id = runs_frame(store["other_id"], tracking_uri=uri)
    assert list(by_id["params.model.hidden_size"]) == [16] and list(by_id["tags.framework"]) == ["numpy"]
    small = runs_frame(filter_string="params.model.hidden_size = '4'", tracking_uri=uri)  # every experiment
    assert sorted(small["params.trainer.seed"]) == [0, 1, 2] and set(small["params.model.hidden_size"]) == {4}
    assert len(runs_frame("rnnlab", tracking_uri=uri, filter_string="params.trainer.seed = '1'")) == 2
    with_parent = runs_frame(store["sweep_id"], tracking_uri=uri, sweep_parents=True)
    assert store["parent"].info.run_id in set(with_parent["run_id"]) and len(with_parent) == 7

    row = by_name.set_index("run_id").loc[jobs[0].info.run_id]
    assert row["run_name"] == jobs[0].info.run_name and row["status"] == "FINISHED"
    assert row["overrides"] == jobs[0].data.tags["overrides"] and "tags.overrides" not in by_name.columns
    assert row["params.trainer.seed"] == int(jobs[0].data.params["trainer.seed"])
    assert row["params.model.cell"] == jobs[0].data.params["model.cell"]
    assert row["metrics.test_mse"] == jobs[0].data.metrics["test_mse"]
    assert row["tags.sweep_id"] == store["sweep_id"]


def test_over_seed_gives_mean_std_and_ci95_per_model_size(store: dict, tmp_path: Path) -> None:
    table = tmp_path / "by_seed.csv"
    result = compare("rnnlab", "--tracking-uri", store["uri"], "--over", "trainer.seed", "--csv", str(table))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader(table.open()))
    columns = ["params.model.hidden_size", "n", "test_mse_mean", "test_mse_std", "test_mse_ci95"]
    assert list(rows[0])[:5] == columns and "baseline_mean_test_mse_ci95" in rows[0]
    assert sorted(int(row["params.model.hidden_size"]) for row in rows) == [4, 8]
    for row in rows:
        size = int(row["params.model.hidden_size"])
        logged = {
            metric: np.array(
                [j.data.metrics[metric] for j in store["jobs"] if j.data.params["model.hidden_size"] == str(size)]
            )
            for metric in ("test_mse", "baseline_mean_test_mse")
        }
        assert int(row["n"]) == 3
        for metric, values in logged.items():
            assert float(row[f"{metric}_mean"]) == pytest.approx(values.mean(), rel=1e-12)
            assert float(row[f"{metric}_std"]) == pytest.approx(values.std(ddof=1), rel=1e-12)
            assert float(row[f"{metric}_ci95"]) == pytest.approx(T_975_2 * values.std(ddof=1) / np.sqrt(3), rel=1e-4)
    printed = result.stdout.splitlines()
    assert printed[0].startswith("over trainer.seed: mean ± 95% confidence interval")
    assert printed[1].split()[:3] == ["model.hidden_size", "n", "test_mse"] and len(printed) == 2 + 2 + 2

    artifacts = {item.path for item in store["client"].list_artifacts(store["parent"].info.run_id)}
    assert "by_seed.csv" in artifacts  # logged by the sweep itself when it ended


def test_an_over_key_no_run_has_is_one_line_and_exit_2(store: dict) -> None:
    result = compare("rnnlab", "--tracking-uri", store["uri"], "--over", "trainer.sed")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "error: --over='trainer.sed' is invalid: no run has this param "
        "(params that vary: model.hidden_size, trainer.seed)"
    )


def test_the_leaderboard_shows_run_names_and_only_the_params_that_differ(store: dict, tmp_path: Path) -> None:
    figure = tmp_path / "c.png"
    result = compare(
        store["sweep_id"], "--tracking-uri", store["uri"], "--objective", "test_mse", "--output", str(figure)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    header = result.stdout.splitlines()[0].split()
    assert header[:5] == ["run_id", "run_name", "status", "model.hidden_size", "trainer.seed"]
    assert header.count("test_mse") == 1 and "framework" not in header and "trainer.lr" not in header
    names = {line.split()[1] for line in result.stdout.splitlines()[1:7]}
    assert names == {job.info.run_name for job in store["jobs"]}
    assert figure.read_bytes()[:4] == b"\x89PNG"
    # Every experiment's runs with seed 0: they differ in size and in tracking.experiment, which is
    # where they were recorded, not what was trained.
    seed_0 = compare("--filter", "params.trainer.seed = '0'", "--tracking-uri", store["uri"], "--output", str(figure))
    assert seed_0.returncode == 0, seed_0.stderr[-2000:]
    assert seed_0.stdout.splitlines()[0].split()[:4] == ["run_id", "run_name", "status", "model.hidden_size"]
    assert "tracking.experiment" not in seed_0.stdout and len(seed_0.stdout.splitlines()) == 1 + 3 + 1


def test_compare_writes_its_figure_under_outputs_not_where_it_runs(store: dict, tmp_path: Path) -> None:
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    figure = PROJECT_ROOT / "outputs" / "compare" / f"{store['other']}.png"  # a unique experiment name
    try:
        result = compare(store["other"], "--tracking-uri", store["uri"], cwd=workdir)
        assert result.returncode == 0, result.stderr[-2000:]
        assert list(workdir.iterdir()) == []
        assert result.stdout.splitlines()[-1] == f"comparison plot: {figure}"
        assert figure.read_bytes()[:4] == b"\x89PNG"
    finally:
        figure.unlink(missing_ok=True)


def test_the_frame_reads_a_server_and_a_sqlite_path_alike(store: dict) -> None:
    expected = runs_frame(store["sweep_id"], tracking_uri=store["uri"]).sort_values("run_id", ignore_index=True)
    from_path = runs_frame(store["sweep_id"], tracking_uri=store["root"] / "mlflow.db")
    pd.testing.assert_frame_equal(from_path.sort_values("run_id", ignore_index=True), expected)
    with mlflow_server(store["root"]) as url:
        served = runs_frame(store["sweep_id"], tracking_uri=url).sort_values("run_id", ignore_index=True)
    columns = [
        c for c in expected.columns if c.startswith(("params.", "metrics.", "tags.")) or c in ("run_name", "status")
    ]
    pd.testing.assert_frame_equal(served[["run_id", *columns]], expected[["run_id", *columns]])


def test_over_seed_counts_runs_that_trained_the_same_thing_once(compose_cfg, tracking_uri) -> None:
    """A run repeated with its config and seed (a rerun, or a run beside a sweep's same job) is no new
    sample: counted twice, n grew and the interval shrank with no new information."""
    from src import experiment
    from src.leaderboard import aggregate

    config = ["framework=numpy", "dataset=sum", "dataset.num_samples=200", "trainer=quick", "tracking.log_model=false"]
    outcomes = [experiment.run(compose_cfg(*config, f"trainer.seed={seed}")) for seed in (0, 1, 1)]
    assert outcomes[1].metrics["test_mse"] == outcomes[2].metrics["test_mse"]  # the same training twice
    table = aggregate(runs_frame("rnnlab", tracking_uri=tracking_uri), "trainer.seed")
    (row,) = table.itertuples()
    assert row.n == 2
    expected = np.array([outcomes[0].metrics["test_mse"], outcomes[1].metrics["test_mse"]])
    assert row.test_mse_mean == pytest.approx(expected.mean(), rel=1e-12)
    assert row.test_mse_std == pytest.approx(expected.std(ddof=1), rel=1e-12)
