"""Leaderboards over MLflow runs: the library behind `python -m src.compare` and a sweep's summary.

A leaderboard is one row per run (describing tags, status, the objective, test metrics and the
baselines beside), best first by the objective; the comparison figure puts validation-loss curves
beside the headline test metric by framework × cell. `summarize_sweep` records both on a sweep's
parent run, which the sweep callback does at the end of every sweep.
"""

from __future__ import annotations

import io
import logging
import math
import re
from typing import TYPE_CHECKING, Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

from src.errors import UserError
from src.tasks import FINAL_LOSS_METRICS, headline_metrics, objective_direction

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

DESCRIBING_TAGS = ["framework", "dataset", "cell", "task"]


# A job that reuses a FINISHED run (tracking.skip_finished) tags the parent reused_run.<run id>.
REUSED_TAG_PREFIX = "reused_run."


def objective_metric(objective: str) -> str:
    """The final metric an objective names: `val_loss` is the best epoch's, `best_val_loss`."""
    return FINAL_LOSS_METRICS.get(objective, objective)


def sweep_runs(client: MlflowClient, sweep_id: str) -> tuple[Run | None, list[Run]]:
    """The sweep's parent run and its jobs' runs."""
    if not re.fullmatch(r"[\w.-]+", sweep_id):  # a sweep id never holds quotes or spaces
        return None, []
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], filter_string=f"tags.sweep_id = '{sweep_id}'"
    )
    parent = next((run for run in runs if run.data.tags.get("sweep") == "parent"), None)
    return parent, [run for run in runs if run.data.tags.get("sweep") != "parent"]


def experiment_runs(client: MlflowClient, name: str) -> list[Run]:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise UserError(f"no experiment or sweep named {name!r} in the tracking store")
    runs = client.search_runs([experiment.experiment_id])
    return [run for run in runs if run.data.tags.get("sweep") != "parent"]


def leaderboard(runs: list[Run], objective: str = "val_loss") -> pd.DataFrame:
    """One row per run: describing tags, status, objective, test metrics and baselines; finished runs
    first, grouped by dataset, best objective first within each."""
    metric = objective_metric(objective)
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status}
        row.update({tag: run.data.tags.get(tag, "") for tag in DESCRIBING_TAGS})
        row["overrides"] = run.data.tags.get("overrides", "")
        row[metric] = run.data.metrics.get(metric, math.nan)
        row.update(
            {
                name: value
                for name, value in sorted(run.data.metrics.items())
                if name.startswith("test_") or (name.startswith("baseline_") and "_test_" in name)
            }
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["finished"] = frame["status"] == "FINISHED"
    # Runs of different datasets are not comparable: each dataset's runs together, best first.
    grows = objective_direction(objective) == "maximize"
    frame = frame.sort_values(["finished", "dataset", metric], ascending=[False, True, not grows], na_position="last")
    return frame.drop(columns="finished").reset_index(drop=True)


def main_test_columns(frame: pd.DataFrame) -> tuple[str | None, list[str]]:
    """The headline test metric present in `frame`, and the baselines' columns of the same metric."""
    main_test = next((c for c in headline_metrics() if c in frame.columns), None)
    if main_test is None:
        return None, []
    suffix = f"_{main_test}"
    return main_test, [c for c in frame.columns if c.startswith("baseline_") and c.endswith(suffix)]


def render(frame: pd.DataFrame, objective: str = "val_loss") -> str:
    """The terminal table: the key columns only, the model's and the baselines' main test metric."""
    if frame.empty:
        return "no runs"
    metric = objective_metric(objective)
    main_test, baselines = main_test_columns(frame)
    columns = ["run_id", "status", *DESCRIBING_TAGS[:3], metric]
    if main_test:
        columns += [main_test, *baselines]
    shown = frame[[c for c in columns if c in frame.columns]].copy()
    shown["run_id"] = shown["run_id"].str[:8]
    return shown.to_string(index=False, float_format=lambda value: f"{value:.4g}")


def comparison_figure(client: MlflowClient, runs: list[Run], frame: pd.DataFrame) -> Figure:
    """Validation-loss curves per run and the main test metric by framework × cell."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.8), layout="constrained")
    curves, bars = figure.subplots(1, 2)
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val_loss")
        if history:
            tags = run.data.tags
            label = f"{tags.get('framework', '?')} {tags.get('cell', '?')} ({run.info.run_id[:6]})"
            points = sorted(history, key=lambda point: point.step)
            curves.plot([p.step for p in points], [p.value for p in points], label=label)
    curves.set(xlabel="epoch", ylabel="val_loss", title="validation loss", yscale="log")
    if len(runs) <= 12:
        curves.legend(fontsize="small")
    main_test, baselines = main_test_columns(frame)
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
    """Record on the parent: best child, its objective, failed jobs, leaderboard and comparison PNG."""
    parent = client.get_run(parent_run_id)
    _, children = sweep_runs(client, parent.data.tags["sweep_id"])
    # Jobs that reused a FINISHED run of an earlier sweep (tracking.skip_finished) count as this sweep's.
    reused_ids = [tag.removeprefix(REUSED_TAG_PREFIX) for tag in parent.data.tags if tag.startswith(REUSED_TAG_PREFIX)]
    own = {child.info.run_id for child in children}
    children = children + [client.get_run(run_id) for run_id in reused_ids if run_id not in own]
    frame = leaderboard(children, objective)
    metric = objective_metric(objective)
    failed = int((frame["status"] != "FINISHED").sum()) if not frame.empty else 0
    summary: dict[str, Any] = {"jobs": len(children), "failed": failed, "reused": len(reused_ids)}
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
    if not frame.empty:
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        client.log_text(parent_run_id, buffer.getvalue(), "leaderboard.csv")
        client.log_text(parent_run_id, render(frame, objective) + "\n", "leaderboard.txt")
        client.log_figure(parent_run_id, comparison_figure(client, children, frame), "comparison.png")
    return summary
