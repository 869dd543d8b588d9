"""The model against its task's baselines, per task and framework: the README's tables.

Trains each preset below with each framework through `experiment.run` into a temporary MLflow store
and prints one markdown table per task: the test metrics of the model (per framework) and of the
baselines (the same for every framework), with the epochs trained and the share of test inputs also
seen in training (`data.test_overlap`). No seconds: on a shared machine they would mislead (the speed
figures are benchmarks/run.py's side-by-side ratios). Run:
    .venv/bin/python -m benchmarks.tasks [next_number parity parity_10 ... chars] [--frameworks numpy torch keras]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from src import experiment
from src.paths import CONF_DIR

COMMON = ["framework.device=cpu", "tracking.log_model=false", "trainer.seed=0"]
# Each preset is a command line; everything it does not name is the default a user gets.
PRESETS = {
    # `python -m src.train` as it stands: the notebook's task with the default network and trainer.
    "next_number": [],
    # The check of the defaults: 8 bits, a GRU, 30 epochs; then longer strings, where
    # 2000 samples cover less and less of the 2**seq_len strings (tests never hold a training string).
    **{
        "parity" if length == 8 else f"parity_{length}": [
            "dataset=parity",
            f"dataset.seq_len={length}",
            "model=gru",
            "trainer.epochs=30",
        ]
        for length in (8, 10, 12, 14, 16)
    },
    "sine_class": ["dataset=sine_class", "model=lstm", "trainer.epochs=30"],
    "chars": [
        "dataset=chars",
        "model=lstm",
        "model.hidden_size=128",
        "trainer.epochs=10",
        "trainer.batch_size=32",
        "trainer.patience=3",
    ],
}
FRAMEWORKS = ["numpy", "torch", "keras"]


def measure(preset: str, framework: str, tracking_uri: str) -> experiment.Outcome:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"tracking.uri={tracking_uri}", f"framework={framework}", *PRESETS[preset], *COMMON],
        )
    return experiment.run(cfg)


def table(preset: str, outcomes: dict[str, experiment.Outcome], tracking_uri: str) -> str:
    from mlflow import MlflowClient

    any_outcome = next(iter(outcomes.values()))
    task = any_outcome.evaluation.task
    overlap = MlflowClient(tracking_uri).get_run(any_outcome.run_id).data.params["data.test_overlap"]
    header = ["predictor", *task.metrics, "epochs"]
    lines = [
        f"**{preset}** ({task.name}; test inputs seen in training: {float(overlap):.0%}): "
        f"`{' '.join(['python -m src.train framework=<framework>', *PRESETS[preset]])}`",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for framework, outcome in outcomes.items():
        values = outcome.evaluation.metrics["model"]
        lines.append(
            f"| model ({framework}) | "
            + " | ".join(f"{values[metric]:.4g}" for metric in task.metrics)
            + f" | {outcome.metrics['epochs_trained']:.0f} |"
        )
    for name, values in any_outcome.evaluation.metrics.items():
        if name != "model":
            lines.append(
                f"| baseline {name} | " + " | ".join(f"{values[metric]:.4g}" for metric in task.metrics) + " | |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", metavar="preset", help=f"any of {', '.join(PRESETS)} (default: all)")
    parser.add_argument("--frameworks", nargs="+", default=FRAMEWORKS, choices=FRAMEWORKS)
    args = parser.parse_args()
    unknown = sorted(set(args.presets) - set(PRESETS))
    if unknown:
        parser.error(f"unknown presets {unknown}: choose from {', '.join(PRESETS)}")
    logging.basicConfig(level=logging.WARNING)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}; seed 0; load average at the start {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        tracking_uri = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
        for preset in args.presets or PRESETS:
            outcomes = {framework: measure(preset, framework, tracking_uri) for framework in args.frameworks}
            print(table(preset, outcomes, tracking_uri), "\n", flush=True)


if __name__ == "__main__":
    main()
