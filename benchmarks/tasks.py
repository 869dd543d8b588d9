"""The model against its task's baselines, per task and framework: the README's tables.

Trains each preset below with each framework through `experiment.run` into a temporary MLflow store
and prints one markdown table per task: the test metrics of the model (per framework) and of the
baselines (the same for every framework), with the training time. Run:
    .venv/bin/python -m benchmarks.tasks [parity|sine_class|chars ...] [--frameworks numpy torch keras]
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from src import experiment
from src.paths import CONF_DIR

COMMON = ["framework.device=cpu", "tracking.log_model=false", "trainer.seed=0"]
PRESETS = {
    # Parity sits at chance for a while before the network finds it: no early stopping.
    "parity": [
        "dataset=parity",
        "model=lstm",
        "model.hidden_size=64",
        "trainer.epochs=150",
        "trainer.lr=0.005",
        "trainer.patience=0",
    ],
    "sine_class": [
        "dataset=sine_class",
        "model=lstm",
        "model.hidden_size=32",
        "trainer.epochs=30",
        "trainer.patience=10",
    ],
    "chars": [
        "dataset=chars",
        "model=lstm",
        "model.hidden_size=128",
        "trainer.epochs=10",
        "trainer.lr=0.01",
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


def table(preset: str, outcomes: dict[str, experiment.Outcome]) -> str:
    any_outcome = next(iter(outcomes.values()))
    task = any_outcome.evaluation.task
    header = ["predictor", *task.metrics, "epochs", "train s"]
    lines = [
        f"**{preset}** ({task.name}): `python -m src.train framework=<framework> {' '.join(PRESETS[preset])}`",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for framework, outcome in outcomes.items():
        values = outcome.evaluation.metrics["model"]
        lines.append(
            f"| model ({framework}) | "
            + " | ".join(f"{values[metric]:.4g}" for metric in task.metrics)
            + f" | {outcome.metrics['epochs_trained']:.0f} | {outcome.metrics['train_seconds']:.1f} |"
        )
    for name, values in any_outcome.evaluation.metrics.items():
        if name != "model":
            lines.append(
                f"| baseline {name} | " + " | ".join(f"{values[metric]:.4g}" for metric in task.metrics) + " | | |"
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
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as scratch:
        tracking_uri = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
        for preset in args.presets or PRESETS:
            outcomes = {framework: measure(preset, framework, tracking_uri) for framework in args.frameworks}
            print(table(preset, outcomes), "\n", flush=True)


if __name__ == "__main__":
    main()
