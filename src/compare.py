"""Compare runs: `python -m src.compare <experiment name | sweep id>`.

Prints a leaderboard (best first by the objective, test metrics and the baselines beside) and
writes a PNG comparing validation-loss curves and test metrics by framework × cell. For a sweep
both are also logged to the sweep's parent run, which is what the sweep callback does at the end.
The tables and figures are src/leaderboard.py's; this module is the command line around them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from src.errors import UserError, require
from src.leaderboard import comparison_figure, experiment_runs, leaderboard, render, summarize_sweep, sweep_runs
from src.tasks import OBJECTIVES


def main(argv: list[str] | None = None) -> int:
    from mlflow.exceptions import MlflowException

    from src.tracking import check_reachable, check_store_exists, open_client
    from src.uris import redact, resolve_uri

    parser = argparse.ArgumentParser(prog="python -m src.compare", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="an MLflow experiment name or a sweep id")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or mlflow.db")
    parser.add_argument("--objective", default="val_loss", help="sort key (default: val_loss)")
    parser.add_argument("--output", type=Path, default=Path("comparison.png"), help="where to write the PNG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        require(args.objective in OBJECTIVES, "--objective", f"must be one of {', '.join(OBJECTIVES)}", args.objective)
        require(
            args.output.suffix.lower() in (".png", ".svg", ".pdf")
            and args.output.resolve().parent.is_dir()
            and not args.output.is_dir(),
            "--output",
            "must be a .png, .svg or .pdf file in an existing folder",
            str(args.output),
        )
        uri = resolve_uri(args.tracking_uri, "--tracking-uri")
        check_reachable(uri)
        check_store_exists(uri)
        client = open_client(uri)
        try:
            parent, runs = sweep_runs(client, args.target)
            if not runs:
                runs = experiment_runs(client, args.target)
        except MlflowException as error:
            raise UserError(redact(f"cannot read {args.target!r} from {uri}: {str(error).splitlines()[0]}")) from None
        if not runs:
            raise UserError(f"{args.target!r} has no runs")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    frame = leaderboard(runs, args.objective)
    print(render(frame, args.objective))
    try:
        comparison_figure(client, runs, frame).savefig(args.output)
    except OSError as error:
        print(
            f"error: --output={str(args.output)!r}: cannot write the plot ({error.strerror}); "
            f"give a writable path with --output",
            file=sys.stderr,
        )
        return 2
    print(f"comparison plot: {args.output}")
    if parent is not None:
        summarize_sweep(client, parent.info.run_id, args.objective)
        print(f"logged to the sweep's parent run {parent.info.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
