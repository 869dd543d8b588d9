"""Stage `evaluate@<framework>`: test metrics against the baselines, into metrics/ and the train run."""

import argparse

from pipelines.common import (
    DATA_FILE,
    load_settings,
    metrics_file,
    model_dir,
    read_json,
    reports_dir,
    run_file,
    stage,
    write_json,
)
from src import experiment
from src.data.base import Splits
from src.frameworks import FRAMEWORKS
from src.predictor import Predictor
from src.tracking import TrackedRun
from src.uris import check_reachable, resolve_uri


@stage
def main(framework: str) -> None:
    settings, _ = load_settings(framework)
    splits = Splits.load(DATA_FILE)
    predictor = Predictor.load(model_dir(framework))
    run_id = read_json(run_file(framework))["run_id"]
    uri = resolve_uri(settings.tracking.uri)
    check_reachable(uri)
    tags = {"stage.evaluate": f"evaluate@{framework}", "data_digest": splits.digest()}
    outputs = experiment.Outputs.here(predictor, splits, save=settings.tracking.log_model)
    try:
        with TrackedRun(uri, settings.tracking.experiment, None, tags, run_id=run_id) as tracked:
            evaluation, metrics = experiment.report(outputs, splits, tracked)
    finally:
        outputs.discard()
    write_json(metrics_file(framework), metrics)
    (reports_dir(framework) / "predictions.csv").write_text(evaluation.task.predictions_csv(evaluation))
    print(evaluation.table())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("framework", choices=list(FRAMEWORKS))
    main(parser.parse_args().framework)
