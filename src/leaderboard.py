"""Leaderboards over MLflow runs: the library behind `python -m src.compare` and a sweep's summary.

Both start from src/runs.py's frame of runs. A leaderboard is one row per run (run name, describing
tags, the params that differ between the runs, status, the objective, test metrics and the baselines
beside), best first by the objective; `aggregate` folds runs that differ only in one param (a seed)
into mean, standard deviation and a 95 % confidence interval; the comparison figure puts
validation-loss curves beside the headline test metric by framework × cell. `summarize_sweep`
records them on a sweep's parent run, which the sweep callback does at the end of every sweep.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd
from mlflow import MlflowClient

from src.runs import select_runs, settings_that_vary, to_frame
from src.tasks import FINAL_LOSS_METRICS, headline_metrics, objective_direction

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

DESCRIBING_TAGS = ["framework", "dataset", "cell", "task"]
# A sweep whose jobs differ in this param gets the aggregate over it as the artifact `by_seed.csv`.
SEED_PARAM = "trainer.seed"


# A job that reuses a FINISHED run (tracking.skip_finished) tags the parent reused_run.<run id>.
REUSED_TAG_PREFIX = "reused_run."


def objective_metric(objective: str) -> str:
    """The final metric an objective names: `val_loss` is the best epoch's, `best_val_loss`."""
    return FINAL_LOSS_METRICS.get(objective, objective)


def leaderboard(runs: pd.DataFrame, objective: str = "val_loss") -> pd.DataFrame:
    """One row per run of src.runs' frame: run name, status, describing tags, overrides, the params
    that differ (`params.<key>`), objective, test metrics and baselines; finished runs first,
    grouped by dataset, best objective first within each."""
    if runs.empty:
        return pd.DataFrame()
    metric = objective_metric(objective)
    columns: dict[str, Any] = {name: runs[name] for name in ("run_id", "run_name", "status")}
    columns.update({tag: runs.get(f"tags.{tag}", pd.Series("", index=runs.index)) for tag in DESCRIBING_TAGS})
    columns["overrides"] = runs["overrides"]
    columns.update({f"params.{key}": runs[f"params.{key}"] for key in settings_that_vary(runs)})
    columns[metric] = runs.get(f"metrics.{metric}", pd.Series(math.nan, index=runs.index))
    for column in runs.columns:
        name = column.removeprefix("metrics.")
        if column.startswith("metrics.") and (
            name.startswith("test_") or (name.startswith("baseline_") and "_test_" in name)
        ):
            columns[name] = runs[column]
    frame = pd.DataFrame(columns)
    frame["finished"] = frame["status"] == "FINISHED"
    # Runs of different datasets are not comparable: each dataset's runs together, best first.
    grows = objective_direction(objective) == "maximize"
    frame = frame.sort_values(["finished", "dataset", metric], ascending=[False, True, not grows], na_position="last")
    return frame.drop(columns="finished").reset_index(drop=True)


def main_test_columns(columns: Iterable[str]) -> tuple[str | None, list[str]]:
    """The headline test metric among `columns`, and the baselines' columns of the same metric."""
    names = list(columns)
    main_test = next((name for name in headline_metrics() if name in names), None)
    if main_test is None:
        return None, []
    suffix = f"_{main_test}"
    return main_test, [name for name in names if name.startswith("baseline_") and name.endswith(suffix)]


def render(frame: pd.DataFrame, objective: str = "val_loss") -> str:
    """The terminal table: run name, the params that tell the runs apart, the objective, and the
    model's and the baselines' main test metric."""
    if frame.empty:
        return "no runs"
    main_test, baselines = main_test_columns(frame.columns)
    settings = [column for column in frame.columns if column.startswith("params.")]
    columns = ["run_id", "run_name", "status", *settings, objective_metric(objective), main_test, *baselines]
    shown = frame[[c for c in dict.fromkeys(columns) if c in frame.columns]].copy()  # test_mse may be both
    shown["run_id"] = shown["run_id"].str[:8]
    return table_text(shown)


def table_text(frame: pd.DataFrame) -> str:
    """A table for the terminal: params by their key, numbers to 4 significant digits."""
    shown = frame.rename(columns=lambda column: column.removeprefix("params."))
    return shown.to_string(index=False, float_format=lambda value: f"{value:.4g}")


def ci95(values: pd.Series) -> float:
    """Half-width of the 95 % confidence interval of the mean: Student's t with n - 1 degrees of
    freedom times the standard error; NaN for fewer than 2 values."""
    from scipy.special import stdtrit  # Student's t quantile; scipy.stats (its t.ppf) costs 0.5 s more to import

    values = values.dropna()
    if len(values) < 2:
        return math.nan
    return float(stdtrit(len(values) - 1, 0.975) * values.std(ddof=1) / math.sqrt(len(values)))


def aggregate(runs: pd.DataFrame, over: str) -> pd.DataFrame:
    """FINISHED runs of src.runs' frame grouped by every param that varies except `over` (a seed):
    per group `n` and, for the headline test metric and each baseline's same metric, `<metric>_mean`,
    `<metric>_std` (n - 1 in the denominator) and `<metric>_ci95`; best mean first. Runs with one
    `run_key` trained the same thing (a rerun, a sweep's job and a run alike): one sample, the latest."""
    finished = runs[runs["status"] == "FINISHED"]
    if "tags.run_key" in finished:
        keyed = finished["tags.run_key"].notna()
        latest = finished[keyed].sort_values("end_time").drop_duplicates("tags.run_key", keep="last")
        finished = pd.concat([finished[~keyed], latest])
    main_test, baselines = main_test_columns(c.removeprefix("metrics.") for c in finished.columns)
    if main_test is None:
        return pd.DataFrame()
    metrics = [main_test, *baselines]
    values = finished[[f"metrics.{metric}" for metric in metrics]].set_axis(metrics, axis=1)
    keys = [finished[f"params.{key}"] for key in settings_that_vary(finished, ignore=[over])]
    groups = values.groupby(keys or [pd.Series(0, index=values.index)], dropna=False)
    statistics: dict[str, tuple[str, Any]] = {"n": (main_test, "count")}
    for metric in metrics:
        statistics |= {f"{metric}_mean": (metric, "mean"), f"{metric}_std": (metric, "std")}
        statistics[f"{metric}_ci95"] = (metric, ci95)
    table = groups.agg(**statistics).reset_index(drop=not keys)
    return table.sort_values(f"{main_test}_mean", ascending=not headline_metrics()[main_test], ignore_index=True)


def render_aggregate(table: pd.DataFrame, over: str) -> str:
    """The terminal table of `aggregate`: each metric as `mean ± ci95 (sd std)`."""
    if table.empty:
        return "no finished runs with a test metric"
    shown = table[[c for c in table.columns if c.startswith("params.")] + ["n"]].copy()
    for metric in (c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")):
        shown[metric] = [
            f"{mean:.4g} ± {ci:.2g} (sd {std:.2g})" if n >= 2 else f"{mean:.4g}"
            for n, mean, std, ci in table[["n", f"{metric}_mean", f"{metric}_std", f"{metric}_ci95"]].itertuples(
                index=False
            )
        ]
    return f"over {over}: mean ± 95% confidence interval (standard deviation) of FINISHED runs\n{table_text(shown)}"


def comparison_figure(client: MlflowClient, frame: pd.DataFrame) -> Figure:
    """Validation-loss curves per run and the main test metric by framework × cell, from a leaderboard."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.8), layout="constrained")
    curves, bars = figure.subplots(1, 2)
    for row in frame.itertuples(index=False):
        history = client.get_metric_history(row.run_id, "val_loss")
        if history:
            label = f"{row.framework or '?'} {row.cell or '?'} ({row.run_id[:6]})"
            points = sorted(history, key=lambda point: point.step)
            curves.plot([p.step for p in points], [p.value for p in points], label=label)
    curves.set(xlabel="epoch", ylabel="val_loss", title="validation loss", yscale="log")
    if not curves.lines:  # every run failed before its first epoch
        curves.text(0.5, 0.5, "no run logged a validation loss", ha="center", va="center", transform=curves.transAxes)
    elif len(frame) <= 12:
        curves.legend(fontsize="small")
    main_test, baselines = main_test_columns(frame.columns)
    if main_test:
        finished = frame[frame["status"] == "FINISHED"]
        best = "max" if headline_metrics()[main_test] else "min"  # accuracy grows, errors shrink
        grouped = finished.groupby(["framework", "cell"])[main_test].agg(best)
        bars.bar([f"{fw}\n{cell}" for fw, cell in grouped.index], grouped.to_numpy())
        for column in baselines:
            level = float(finished[column].agg(best))
            bars.axhline(level, linestyle=":", color="grey")
            bars.annotate(column.split("_")[1], (0, level), fontsize="small", color="grey")
        bars.set(title=f"{main_test} by framework × cell (best run; dotted: baselines)", ylabel=main_test)
    return figure


def summarize_sweep(client: MlflowClient, parent_run_id: str, objective: str) -> dict[str, Any]:
    """Record on the parent: best child, its objective, failed jobs, leaderboard and comparison PNG,
    and `by_seed.csv` (the aggregate over `trainer.seed`) when the jobs differ in their seed."""
    parent = client.get_run(parent_run_id)
    children = select_runs(client, parent.data.tags["sweep_id"]).runs
    # Jobs that reused a FINISHED run of an earlier sweep (tracking.skip_finished) count as this sweep's.
    reused_ids = [tag.removeprefix(REUSED_TAG_PREFIX) for tag in parent.data.tags if tag.startswith(REUSED_TAG_PREFIX)]
    own = {child.info.run_id for child in children}
    children = children + [client.get_run(run_id) for run_id in reused_ids if run_id not in own]
    runs = to_frame(children)
    frame = leaderboard(runs, objective)
    metric = objective_metric(objective)
    failed = int(frame["status"].isin(["FAILED", "KILLED"]).sum()) if not frame.empty else 0  # not RUNNING ones
    summary: dict[str, Any] = {"jobs": len(children), "failed": failed, "reused": len(reused_ids)}
    # The artifacts first: a store that refuses them (a full or read-only artifact disk) then refuses
    # the summary before the parent's metrics and tags say something its artifacts do not show.
    if not frame.empty:
        client.log_text(parent_run_id, frame.to_csv(index=False), "leaderboard.csv")
        client.log_text(parent_run_id, render(frame, objective) + "\n", "leaderboard.txt")
        client.log_figure(parent_run_id, comparison_figure(client, frame), "comparison.png")
    if SEED_PARAM in settings_that_vary(runs):
        by_seed = aggregate(runs, SEED_PARAM)
        if not by_seed.empty:
            client.log_text(parent_run_id, by_seed.to_csv(index=False), "by_seed.csv")
    client.log_metric(parent_run_id, "jobs", len(children))
    client.log_metric(parent_run_id, "failed_jobs", failed)
    client.log_metric(parent_run_id, "reused_jobs", len(reused_ids))
    finished = frame[(frame["status"] == "FINISHED") & frame[metric].notna()] if not frame.empty else frame
    if not finished.empty:
        best = finished.iloc[0]
        summary.update(best_run_id=best["run_id"], best_objective=float(best[metric]))
        client.set_tag(parent_run_id, "best_run_id", best["run_id"])
        client.set_tag(parent_run_id, "best_overrides", best["overrides"])
        client.log_metric(parent_run_id, f"best_{metric.removeprefix('best_')}", float(best[metric]))
    return summary
