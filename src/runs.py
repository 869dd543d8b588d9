"""Housekeeping over a tracking store: `python -m src.runs cleanup [--tracking-uri URI] [--stale-minutes M]`.

`cleanup` ends KILLED every RUNNING run whose process is gone (a kill -9, an OOM kill, a lost
laptop lid: the process could not end its own run) and lists what it changed. On this host a run's
heartbeat tags say which process owns it; runs of other hosts, or older runs without heartbeat
tags, are ended only with `--stale-minutes`, when their last heartbeat is older than that.
"""

from __future__ import annotations

import argparse
import logging
import sys

from src.errors import UserError


def cleanup(uri: str, stale_minutes: float | None = None) -> list[tuple[str, str, str]]:
    """End dead runs in every experiment of the store; (run id, run name, experiment) of each."""
    from src.resume import end_dead_runs
    from src.tracking import open_client

    client = open_client(uri)
    experiments = {experiment.experiment_id: experiment.name for experiment in client.search_experiments()}
    ended = end_dead_runs(client, experiments, stale_minutes)
    return [(run.info.run_id, run.info.run_name or "", experiments[run.info.experiment_id]) for run in ended]


def main(argv: list[str] | None = None) -> int:
    from src.tracking import check_reachable, check_store_exists
    from src.uris import redact, resolve_uri

    parser = argparse.ArgumentParser(prog="python -m src.runs", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    clean = commands.add_parser("cleanup", help="end KILLED the RUNNING runs whose process is gone")
    clean.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or mlflow.db")
    clean.add_argument(
        "--stale-minutes",
        type=float,
        default=None,
        help="also end RUNNING runs (any host) whose last heartbeat is older than this",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    uri = args.tracking_uri or ""
    try:
        if args.stale_minutes is not None and not args.stale_minutes > 0:
            raise UserError(f"--stale-minutes={args.stale_minutes} is invalid: must be a number > 0")
        uri = resolve_uri(args.tracking_uri, "--tracking-uri")
        check_reachable(uri)
        check_store_exists(uri)
        ended = cleanup(uri, args.stale_minutes)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a store that cannot be read: one line, the URI without secrets
        print(f"error: cannot clean up {redact(uri)}: {redact(str(error).splitlines()[0])}", file=sys.stderr)
        return 2
    for run_id, name, experiment in ended:
        print(f"ended KILLED: {run_id} {name} (experiment {experiment})")
    print(f"{len(ended)} dead run(s) ended" if ended else "no dead runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
