"""Stage `train@<framework>`: fit on data/splits.npz, save models/<framework>/, start its MLflow run.

The run stays the model's record: its id goes into reports/<framework>/mlflow_run.json, and the
evaluate stage adds its metrics to that same run. Under `dvc exp run` the run is named after the DVC
experiment (`<experiment>-<framework>`, else `dvc-<framework>`) and tagged with its name and baseline commit.
"""

import argparse
from dataclasses import asdict

import pandas as pd

from pipelines.common import (
    DATA_FILE,
    dvc_experiment_tags,
    load_settings,
    model_dir,
    reports_dir,
    run_file,
    stage,
    write_json,
)
from src import experiment
from src.data.base import Splits
from src.frameworks import FRAMEWORKS
from src.frameworks.training import Checkpointing
from src.resume import RUN_KEY_TAG, run_key
from src.tracking import TrackedRun
from src.uris import check_reachable, resolve_uri


@stage
def main(framework: str) -> None:
    settings, params = load_settings(framework)
    splits = Splits.load(DATA_FILE)
    uri = resolve_uri(settings.tracking.uri)
    check_reachable(uri)
    task = experiment.check_ready(settings, splits)
    dvc_tags = dvc_experiment_tags()
    tags = {
        **experiment.run_tags(settings, splits, ["dvc repro"]),
        "stage.train": f"train@{framework}",
        RUN_KEY_TAG: run_key(params, splits.digest()),
        **dvc_tags,
    }
    run_name = settings.tracking.run_name or f"{dvc_tags.get('dvc.exp_name', 'dvc')}-{framework}"
    with TrackedRun(uri, settings.tracking.experiment, run_name, tags) as tracked:
        tracked.log_params(experiment.run_params(params, splits))
        tracked.log_datasets(splits)
        checkpoint = experiment.checkpoint_path(uri, tracked.run_id) if settings.trainer.checkpoint_every else None
        tracked.checkpoint = checkpoint
        trained = experiment.train(
            settings, task, splits, tracked, Checkpointing(checkpoint, settings.trainer.checkpoint_every)
        )
    output = model_dir(framework)
    output.mkdir(parents=True, exist_ok=True)
    assert trained.predictor is not None  # trained in this process (no training process given)
    trained.predictor.save(output)
    write_json(run_file(framework), {"run_id": tracked.run_id, "experiment": settings.tracking.experiment})
    history = pd.DataFrame([asdict(result) for result in trained.fit.history])
    history.to_csv(reports_dir(framework) / "loss.csv", index=False, float_format="%.9g")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("framework", choices=list(FRAMEWORKS))
    main(parser.parse_args().framework)
