"""Compare runs: `python -m src.compare <experiment name or id | sweep id> [--filter ...] [--over KEY]`.

Prints a leaderboard (best first by the objective; run name, the params that tell the runs apart,
test metrics and the baselines beside), or with `--over trainer.seed` (any param) the runs that
differ only in that param folded into mean, standard deviation and 95 % confidence interval.
`--csv` writes the printed table; a PNG compares validation-loss curves and test metrics by
framework × cell, by default in outputs/compare/ (ignored by git, like Hydra's outputs/). For a
sweep, the leaderboard and the figure are also logged to the sweep's parent run. The tables and
figures are src/leaderboard.py's over src/runs.py's frame; this module is the command line.
"""

from __future__ import annotations

import argparse
import errno
import logging
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from src.errors import TrackingUnavailable, UserError, exit_interrupted, require, stop_on_sigterm
from src.leaderboard import aggregate, comparison_figure, leaderboard, render, render_aggregate, summarize_sweep
from src.paths import PROJECT_ROOT
from src.runs import read_store, select_runs, settings_that_vary, to_frame
from src.tasks import OBJECTIVES
from src.tracking import failure_reason, server_errors, store_writable

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# Where the figure goes unless --output says otherwise: inside outputs/, which git ignores.
OUTPUT_DIR = PROJECT_ROOT / "outputs" / "compare"
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def default_output(target: str | None) -> Path:
    """outputs/compare/<target>.png, the target made safe as a file name."""
    name = re.sub(r"[^\w.-]+", "_", target or "filtered").lstrip(".")
    return OUTPUT_DIR / f"{name or 'runs'}.png"


def relative_to_cwd(path: Path) -> Path:
    """`outputs/compare/x.png` when run from the project, the full path from anywhere else."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def check_file(path: Path | None, option: str, suffixes: tuple[str, ...]) -> None:
    """Before any work: a file of the right kind in a folder that exists and takes a new file."""
    if path is not None:
        require(
            path.suffix.lower() in suffixes and path.resolve().parent.is_dir() and not path.is_dir(),
            option,
            f"must be a {', '.join(suffixes)} file in an existing folder",
            str(path),
        )
        try:
            with tempfile.TemporaryFile(dir=path.resolve().parent):
                pass
        except OSError as error:
            raise UserError(f"{option}={str(path)!r}: cannot write ({error.strerror}); give a writable path") from None


def written(option: str, path: Path, write: Callable[[Path], object]) -> bool:
    """Write a file; a path that cannot be written is one line on stderr, not a traceback."""
    try:
        write(path)
    except OSError as error:
        print(f"error: {option}={str(path)!r}: cannot write ({error.strerror}); give a writable path", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException

    from src.uris import redact

    parser = argparse.ArgumentParser(prog="python -m src.compare", description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", help="an MLflow experiment name or id, or a sweep id")
    parser.add_argument("--filter", default=None, help="an MLflow filter string, e.g. \"params.model.cell = 'lstm'\"")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or mlflow.db")
    parser.add_argument("--objective", default="val_loss", help="sort key (default: val_loss)")
    parser.add_argument("--over", default=None, help="a param to aggregate over (e.g. trainer.seed)")
    parser.add_argument("--csv", type=Path, default=None, help="also write the printed table to this CSV file")
    parser.add_argument("--output", type=Path, default=None, help="the PNG (default: outputs/compare/<target>.png)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        require(args.objective in OBJECTIVES, "--objective", f"must be one of {', '.join(OBJECTIVES)}", args.objective)
        check_file(args.output, "--output", FIGURE_SUFFIXES)
        check_file(args.csv, "--csv", (".csv",))
        uri, client = read_store(args.tracking_uri)
        try:
            selection = select_runs(client, args.target, args.filter)
        except MlflowException as error:
            what = args.target if args.filter is None else f"{args.target or ''} {args.filter}".strip()
            raise UserError(redact(f"cannot read {what!r} from {uri}: {str(error).splitlines()[0]}")) from None
        if not selection.runs:
            raise UserError(
                f"{args.target or args.filter!r} has no runs{' that match --filter' if args.filter else ''}"
            )
        runs = to_frame(selection.runs)
        if args.over is not None:
            require(
                f"params.{args.over}" in runs and runs[f"params.{args.over}"].notna().any(),
                "--over",
                f"no run has this param (params that vary: {', '.join(settings_that_vary(runs)) or 'none'})",
                args.over,
            )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    frame = leaderboard(runs, args.objective)
    table = aggregate(runs, args.over) if args.over else frame
    print(render_aggregate(table, args.over) if args.over else render(frame, args.objective))
    output = args.output or default_output(args.target)
    try:
        with server_errors(uri):  # the figure reads every run's curve from the store
            figure = comparison_figure(client, frame)
    except TrackingUnavailable as error:  # the server died, or the store failed, part-way
        print(f"error: {error}", file=sys.stderr)
        return 3

    def save_figure(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)  # outputs/compare/; a given --output's folder exists
        figure.savefig(path)

    if args.csv is not None and not written("--csv", args.csv, lambda path: table.to_csv(path, index=False)):
        return 2
    if not written("--output", output, save_figure):
        return 2
    if args.csv is not None:
        print(f"table: {args.csv}")
    print(f"comparison plot: {relative_to_cwd(output)}")
    if selection.sweep_parent is not None and args.filter is None:
        try:
            log_to_parent(client, uri, selection.sweep_parent, args.objective)
        except TrackingUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            return 3
    return 0


def log_to_parent(client: MlflowClient, uri: str, parent: Run, objective: str) -> None:
    """Record the leaderboard on the sweep's parent run, unless the store cannot be written: a reader of
    a read-only store (an archive, a read-only mount, a server that grants reading only) gets its
    comparison and a note. Any other failure of the store: TrackingUnavailable. Nor while the sweep
    runs: its unfinished jobs are not failed ones, and the sweep records its own summary as it ends."""
    parent_run_id = parent.info.run_id
    not_logged = f"not logged to the sweep's parent run {parent_run_id}"
    if parent.info.status == "RUNNING":
        print(
            f"{not_logged}: the sweep is still running and logs its summary as it ends "
            f"(a sweep whose process is gone: python -m src.runs cleanup ends it)"
        )
        return
    if not store_writable(uri):
        print(f"{not_logged}: the tracking store is read-only")
        return
    try:
        with server_errors(uri):
            summarize_sweep(client, parent_run_id, objective)
    except Exception as error:
        if not write_refused(error):
            raise
        print(f"{not_logged}: the tracking store refused the write ({failure_reason(error)})")
        return
    print(f"logged to the sweep's parent run {parent_run_id}")


def write_refused(error: BaseException) -> bool:
    """A store that may be read but not written: a file or folder without permission or on a read-only
    disk (the artifacts), SQLite's read-only database, a server's 403 (MLflow's READ permission)."""
    for cause in (error, error.__cause__, error.__context__):
        if isinstance(cause, PermissionError) or (isinstance(cause, OSError) and cause.errno == errno.EROFS):
            return True
        if getattr(cause, "error_code", "") == "PERMISSION_DENIED" or "readonly database" in str(cause):
            return True
    return False


if __name__ == "__main__":
    stop_on_sigterm()  # SIGTERM as Ctrl-C: one line, exit 143
    try:
        sys.exit(main())
    except KeyboardInterrupt as interruption:
        exit_interrupted(interruption, "")
