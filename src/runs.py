"""The runs of a tracking store: a DataFrame for analysis, and housekeeping.

`runs_frame("rnnlab")` (an experiment name or id, a sweep id, and/or an MLflow filter string) is one
row per run, in the columns `mlflow.search_runs` uses: `params.<key>`, `metrics.<name>` (final
values), `tags.<name>`, plus `run_id`, `run_name`, `status`, `overrides` and the times. `src.compare`
and the sweep summary are built on it.

`python -m src.runs page [--experiment NAME]` prints the address of the experiment's runs table in
the MLflow UI (what `make ui` points to).

`python -m src.runs cleanup [--tracking-uri URI] [--stale-minutes M]` ends KILLED every RUNNING run
whose process is gone (a kill -9, an OOM kill, a lost laptop lid: the process could not end its own
run) and lists what it changed. On this host a run's heartbeat tags say which process owns it; runs
of other hosts, or older runs without heartbeat tags, are ended only with `--stale-minutes`, when
their last heartbeat is older than that.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from src.errors import UserError, exit_interrupted, stop_on_sigterm
from src.resume import KEYS_WITHOUT_EFFECT

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# Tags that get a column of their own (and are not repeated as tags.*).
PROMOTED_TAGS = {"mlflow.runName": "run_name", "overrides": "overrides"}
# Params that do not say what was trained: the config keys that cannot change the result (where a
# run is tracked, ...: src/resume.py's) and data.*, the sizes of the data the config drew. Two runs
# that differ only there are replicas of one setting.
NOT_SETTINGS = (*KEYS_WITHOUT_EFFECT, "data")
SWEEP_ID = re.compile(r"[\w.-]+")  # a sweep id never holds quotes or spaces


@dataclass(frozen=True)
class Selection:
    """The runs a target names; for a sweep id also its parent run, where the sweep's summary goes."""

    runs: list[Run]
    sweep_parent: Run | None = None


def read_store(tracking_uri: str | None, source: str = "--tracking-uri") -> tuple[str, MlflowClient]:
    """Resolve and open an existing store for reading: a mistyped path or a dead server is one line."""
    from src.tracking import check_store_exists, open_client
    from src.uris import check_reachable, resolve_uri

    uri = resolve_uri(tracking_uri, source)
    check_reachable(uri)
    check_store_exists(uri)
    return uri, open_client(uri)


def all_pages(search: Callable[[str | None], Any]) -> list[Any]:
    """Every item of a paged MLflow search (one page holds at most 1000)."""
    items: list[Any] = []
    token = None
    while True:
        page = search(token)
        items.extend(page)
        token = page.token
        if not token:
            return items


def search_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str = "") -> list[Run]:
    return all_pages(lambda token: client.search_runs(experiment_ids, filter_string, page_token=token))


def select_runs(
    client: MlflowClient, target: str | None = None, filter_string: str | None = None, sweep_parents: bool = False
) -> Selection:
    """The runs of a sweep id, else of an experiment name, else of an experiment id (all experiments
    when no target), narrowed by an MLflow filter string. A sweep's parent is a summary, not a
    training: it is left out unless `sweep_parents`."""
    if not (target or "").strip() and not filter_string:  # an empty target names nothing
        raise UserError("give an experiment (name or id), a sweep id or a filter string")
    target = target if (target or "").strip() else None
    experiments = [e.experiment_id for e in all_pages(lambda token: client.search_experiments(page_token=token))]
    conditions = [filter_string] if filter_string else []
    parent = None
    if target is not None:
        sweep = f"tags.sweep_id = '{target}'"
        if SWEEP_ID.fullmatch(target) and client.search_runs(experiments, sweep, max_results=1):
            conditions.insert(0, sweep)
            parent = next(iter(search_runs(client, experiments, f"{sweep} and tags.sweep = 'parent'")), None)
        else:
            experiments = [find_experiment(client, target)]
    runs = search_runs(client, experiments, " and ".join(conditions))
    if not sweep_parents:
        runs = [run for run in runs if run.data.tags.get("sweep") != "parent"]
    return Selection(runs, parent)


def find_experiment(client: MlflowClient, target: str) -> str:
    """The id of the experiment named `target`, or whose id is `target`."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(target)
    if experiment is None:
        try:
            experiment = client.get_experiment(target)
        except MlflowException:  # no such id, or not an id at all
            experiment = None
    if experiment is None:
        raise UserError(
            f"no experiment or sweep named {target!r} in the tracking store "
            "(give an experiment name or id, or a sweep id)"
        )
    return experiment.experiment_id


def to_frame(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per run, in `mlflow.search_runs`' columns; a param column whose every value is a
    number holds numbers (so that `model.hidden_size` sorts 4, 8, 16)."""
    rows = []
    for run in runs:
        tags = run.data.tags
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "start_time": pd.to_datetime(run.info.start_time, unit="ms", utc=True),
            "end_time": pd.to_datetime(run.info.end_time, unit="ms", utc=True),
            "overrides": tags.get("overrides", ""),
        }
        row.update({f"params.{key}": value for key, value in sorted(run.data.params.items())})
        row.update({f"metrics.{name}": value for name, value in sorted(run.data.metrics.items())})
        row.update({f"tags.{name}": value for name, value in sorted(tags.items()) if name not in PROMOTED_TAGS})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else ["run_id", "run_name", "experiment_id", "status"])
    for column in (c for c in frame.columns if c.startswith("params.")):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if numbers.count() == frame[column].count():
            frame[column] = numbers
    return frame


def runs_frame(
    target: str | None = None,
    *,
    tracking_uri: str | Path | None = None,
    filter_string: str | None = None,
    sweep_parents: bool = False,
) -> pd.DataFrame:
    """The runs of an experiment (name or id) or a sweep id, and/or those an MLflow filter string
    selects (`"params.model.cell = 'lstm' and metrics.test_mse < 1"`), from any store: a tracking URI
    (`sqlite:///...`, `http://host:port`) or a SQLite file's path; by default `$MLFLOW_TRACKING_URI`,
    else the project's mlflow.db."""
    if isinstance(tracking_uri, Path) or (tracking_uri and "://" not in tracking_uri and tracking_uri.endswith(".db")):
        tracking_uri = f"sqlite:///{Path(tracking_uri).resolve()}"
    _, client = read_store(tracking_uri, "tracking_uri")
    return to_frame(select_runs(client, target, filter_string, sweep_parents).runs)


def is_under(key: str, prefixes: Iterable[str]) -> bool:
    """`key` is one of `prefixes` or inside one (`tracking.uri` is under `tracking`)."""
    return any(key == prefix or key.startswith(f"{prefix}.") for prefix in prefixes)


def settings_that_vary(frame: pd.DataFrame, ignore: Iterable[str] = ()) -> list[str]:
    """The param keys (without `params.`) with more than one value among the runs: what tells them
    apart. A missing param is no difference (a run that failed before logging its params)."""
    ignored = set(ignore)
    return [
        column.removeprefix("params.")
        for column in frame.columns
        if column.startswith("params.")
        and not is_under(column.removeprefix("params."), NOT_SETTINGS)
        and column.removeprefix("params.") not in ignored
        and frame[column].nunique() > 1
    ]


def cleanup(uri: str, stale_minutes: float | None = None) -> list[tuple[str, str, str]]:
    """End dead runs in every experiment of the store; (run id, run name, experiment) of each."""
    from src.resume import end_dead_runs
    from src.tracking import open_client

    client = open_client(uri)
    experiments = {experiment.experiment_id: experiment.name for experiment in client.search_experiments()}
    ended = end_dead_runs(client, experiments, stale_minutes)
    return [(run.info.run_id, run.info.run_name or "", experiments[run.info.experiment_id]) for run in ended]


def runs_page(ui: str, tracking_uri: str | None, experiment: str) -> str:
    """The address of an experiment's runs table in the MLflow UI at `ui`. MLflow 3's UI opens an
    experiment on its GenAI overview (traces: none here), so `make ui` prints this page to open."""
    _, client = read_store(tracking_uri)
    return f"{ui.rstrip('/')}/#/experiments/{find_experiment(client, experiment)}/runs"


def main(argv: list[str] | None = None) -> int:
    from src.uris import redact

    parser = argparse.ArgumentParser(prog="python -m src.runs", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    clean = commands.add_parser("cleanup", help="end KILLED the RUNNING runs whose process is gone")
    clean.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or mlflow.db")
    clean.add_argument(
        "--stale-minutes",
        type=float,
        default=None,
        help="also end RUNNING runs of other hosts (or without heartbeat tags) whose last heartbeat is older than this",
    )
    page = commands.add_parser("page", help="the address of an experiment's runs table in the MLflow UI")
    page.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or mlflow.db")
    page.add_argument("--experiment", default="rnnlab", help="an experiment name or id (default: rnnlab)")
    page.add_argument("--ui", default="http://127.0.0.1:5000", help="where the UI serves (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.command == "page":
        try:
            print(runs_page(args.ui, args.tracking_uri, args.experiment))
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    uri = args.tracking_uri or ""
    try:
        if args.stale_minutes is not None and not args.stale_minutes > 0:
            raise UserError(f"--stale-minutes={args.stale_minutes} is invalid: must be a number > 0")
        uri, _ = read_store(args.tracking_uri)
        ended = cleanup(uri, args.stale_minutes)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a store that cannot be read or written: one line, the URI without secrets
        from src.tracking import failure_reason

        print(f"error: cannot clean up {redact(uri)}: {failure_reason(error)}", file=sys.stderr)
        return 2
    for run_id, name, experiment in ended:
        print(f"ended KILLED: {run_id} {name} (experiment {experiment})")
    print(f"{len(ended)} dead run(s) ended" if ended else "no dead runs")
    return 0


if __name__ == "__main__":
    stop_on_sigterm()  # SIGTERM as Ctrl-C: one line, exit 143
    try:
        sys.exit(main())
    except KeyboardInterrupt as interruption:
        exit_interrupted(interruption, "")
