"""Classification and language modelling end to end: short real runs of every new dataset with every
framework into a temporary MLflow store, a language model that learns more than bigram statistics,
and sampling from a model loaded back through its model URI."""

from __future__ import annotations

import io
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from src import experiment, sample
from src.errors import UserError
from src.tasks.language_model import generate_text
from tests.conftest import QUICK

FRAMEWORKS = ["numpy", "torch", "keras"]
SHORT_DATA = {
    "parity": ["dataset.num_samples=300"],
    "sine_class": ["dataset.num_samples=300"],
    "chars": ["dataset.max_chars=12000", "dataset.seq_len=32"],
}
EXPECTED = {
    "parity": (
        {
            "test_accuracy",
            "test_f1_macro",
            "test_log_loss",
            "val_accuracy",
            "baseline_majority_test_accuracy",
            "baseline_logistic_test_f1_macro",
            "baseline_logistic_test_log_loss",
        },
        "plots/confusion_matrix.png",
    ),
    "sine_class": ({"test_accuracy", "baseline_majority_test_log_loss"}, "plots/confusion_matrix.png"),
    "chars": (
        {
            "test_loss",
            "test_perplexity",
            "test_bpc",
            "val_bpc",
            "baseline_unigram_test_bpc",
            "baseline_bigram_test_bpc",
            "baseline_bigram_test_perplexity",
        },
        "sample.txt",
    ),
}


def artifact_text(tracking_uri: str, run_id: str, path: str) -> str:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=tracking_uri)
    with open(local, encoding="utf-8") as handle:
        return handle.read()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("dataset", sorted(SHORT_DATA))
def test_new_tasks_train_and_land_in_mlflow(compose_cfg, tracking_uri, dataset: str, framework: str) -> None:
    log_model = framework == "torch"  # one loadable model per task is enough to check the pyfunc
    cfg = compose_cfg(
        f"dataset={dataset}",
        f"framework={framework}",
        f"tracking.log_model={str(log_model).lower()}",
        *SHORT_DATA[dataset],
        *QUICK,
    )
    outcome = experiment.run(cfg)
    run = MlflowClient(tracking_uri).get_run(outcome.run_id)
    metrics, (names, artifact) = run.data.metrics, EXPECTED[dataset]
    assert names <= set(metrics) and all(np.isfinite(metrics[name]) for name in names)
    assert "test_mse" not in metrics
    assert run.data.tags["task"] == ("language_model" if dataset == "chars" else "classification")
    history = MlflowClient(tracking_uri).get_metric_history(outcome.run_id, "val_loss")
    assert [point.step for point in history] == [1, 2, 3]  # per-epoch cross-entropy, nothing appended
    assert min(point.value for point in history) == pytest.approx(metrics["best_val_loss"])
    artifacts = {item.path for item in MlflowClient(tracking_uri).list_artifacts(outcome.run_id)}
    artifacts |= {item.path for item in MlflowClient(tracking_uri).list_artifacts(outcome.run_id, "plots")}
    assert {artifact, "plots/loss_curve.png", "predictions.csv", "results.txt"} <= artifacts
    assert "plots/predictions_vs_truth.png" not in artifacts
    if dataset == "chars":
        # The restored best epoch's weights: their validation cross-entropy is best_val_loss.
        assert metrics["val_bpc"] == pytest.approx(metrics["best_val_loss"] / np.log(2), rel=1e-4)
        assert metrics["test_perplexity"] == pytest.approx(np.exp(metrics["test_loss"]), rel=1e-6)
    else:
        assert metrics["val_log_loss"] == pytest.approx(metrics["best_val_loss"], rel=1e-4)
        table = pd.read_csv(io.StringIO(artifact_text(tracking_uri, outcome.run_id, "predictions.csv")))
        probabilities = table.filter(like="p_model_").to_numpy()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        assert np.mean(table["y_pred_model"] == table["y_true"]) == pytest.approx(metrics["test_accuracy"])
        assert np.array_equal(np.argmax(probabilities, axis=1), table["y_pred_model"])
    if log_model:
        mlflow.set_tracking_uri(tracking_uri)
        model = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
        if dataset == "chars":  # a language model takes text and writes what src.sample writes
            predictor = model.unwrap_python_model().predictor
            written = model.predict(["def ", "x"], params={"length": 30, "seed": 4})
            assert list(written) == [
                generate_text(predictor, prime, 30, 0.8, np.random.default_rng(4)) for prime in ("def ", "x")
            ]
            assert len(written[0]) == 30 and written[0] != written[1]
        else:
            predictions = model.predict(_test_inputs(cfg)[:4])
            np.testing.assert_allclose(predictions, outcome.evaluation.predictions["model"][:4], rtol=1e-5, atol=1e-6)


def _test_inputs(cfg) -> np.ndarray:
    from src import data
    from src.settings import settings_from

    settings = settings_from(cfg)
    return data.generate(settings.dataset, settings.trainer.seed).test.x


# A small torch LSTM on the default corpus (150k characters of stdlib source): a few epochs.
LANGUAGE_MODEL = [
    "dataset=chars",
    "framework=torch",
    "framework.device=cpu",
    "model.hidden_size=128",
    "trainer.epochs=3",
    "trainer.lr=0.01",
    "trainer.patience=0",
]


@pytest.fixture(scope="module")
def language_model_run(tmp_path_factory) -> tuple[str, str, dict[str, float]]:
    from hydra import compose, initialize_config_dir

    from src.paths import CONF_DIR

    tracking_uri = f"sqlite:///{tmp_path_factory.mktemp('lm') / 'mlflow.db'}"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"tracking.uri={tracking_uri}", *LANGUAGE_MODEL])
    outcome = experiment.run(cfg)
    return tracking_uri, outcome.run_id, outcome.metrics


def test_language_model_beats_the_bigram_baseline_on_the_default_corpus(language_model_run) -> None:
    _, _, metrics = language_model_run
    assert metrics["baseline_bigram_test_bpc"] < metrics["baseline_unigram_test_bpc"]
    assert metrics["test_bpc"] < metrics["baseline_bigram_test_bpc"] - 0.3


def test_sampling_from_the_logged_model_repeats_with_a_seed(language_model_run, capsys) -> None:
    tracking_uri, run_id, _ = language_model_run
    model_uri = MlflowClient(tracking_uri).get_run(run_id).data.tags["model_uri"]
    texts = []
    for model, seed in [(model_uri, 0), (run_id, 0), (run_id, 1)]:
        sample.main(
            [
                model,
                "--prime",
                "def ",
                "--length",
                "80",
                "--temperature",
                "0.8",
                "--seed",
                str(seed),
                "--tracking-uri",
                tracking_uri,
            ]
        )
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] != texts[2]
    assert all(text.startswith("def ") and len(text) == len("def ") + 80 + 1 for text in texts)
    logged = artifact_text(tracking_uri, run_id, "sample.txt")
    assert len(logged) > 300


@pytest.mark.parametrize(
    "args, message",
    [
        (["--temperature", "inf"], "--temperature=inf is invalid: must be in (0, 100]"),  # was uniform noise, exit 0
        (["--temperature", "1e308"], "--temperature=1e+308 is invalid: must be in (0, 100]"),
        (["--prime", "x" * 95_000, "--length", "10000"], "--prime is invalid: the primes' 95000 characters plus"),
    ],
)
def test_sampling_refuses_what_is_noise_or_would_run_for_minutes(language_model_run, capsys, args, message) -> None:
    tracking_uri, run_id, _ = language_model_run
    with pytest.raises(SystemExit) as exit_info:
        sample.main([run_id, *args, "--tracking-uri", tracking_uri])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {message}"), line


def test_sampling_refuses_unknown_runs_and_other_tasks(compose_cfg, tracking_uri, capsys) -> None:
    outcome = experiment.run(compose_cfg("dataset=parity", "dataset.num_samples=200", *QUICK))
    with pytest.raises(SystemExit) as exit_info:
        sample.main(["0123456789abcdef", "--tracking-uri", tracking_uri])
    assert exit_info.value.code == 2
    assert "error: no MLflow run '0123456789abcdef'" in capsys.readouterr().err.splitlines()[-1]
    with pytest.raises(UserError, match="is a classification model; sampling needs a language model"):
        sample.load_language_model(outcome.run_id, tracking_uri)


def test_an_objective_of_another_task_fails_before_any_run(compose_cfg, tracking_uri) -> None:
    with pytest.raises(UserError, match="objective='test_mse' is invalid: must be one of .*test_accuracy"):
        experiment.run(compose_cfg("dataset=parity", "objective=test_mse", *QUICK))
    assert MlflowClient(tracking_uri).search_runs(["1"]) == []


def test_parity_can_be_posed_as_regression(compose_cfg) -> None:
    from src import experiment

    outcome = experiment.run(
        compose_cfg(
            "dataset=parity",
            "dataset.task=regression",
            "dataset.num_samples=300",
            "framework=numpy",
            "tracking.log_model=false",
            "trainer=quick",
        )
    )
    assert {"test_mse", "baseline_linear_test_mse"} <= set(outcome.metrics)
    assert "test_accuracy" not in outcome.metrics
    assert 0.15 < outcome.metrics["baseline_mean_test_mse"] < 0.35  # a coin's variance, 0.25


def test_a_task_the_dataset_cannot_pose_is_refused(compose_cfg) -> None:
    import pytest

    from src.errors import UserError
    from src.settings import settings_from

    with pytest.raises(UserError, match="dataset.task"):
        settings_from(compose_cfg("dataset=parity", "dataset.task=language_model"))


def test_a_model_whose_files_changed_after_logging_is_refused(language_model_run, capsys) -> None:
    tracking_uri, run_id, _ = language_model_run
    client = MlflowClient(tracking_uri)
    model_uri = client.get_run(run_id).data.tags["model_uri"]
    location = Path(client.get_logged_model(model_uri.split("/")[1]).artifact_location.removeprefix("file://"))
    code = next(location.rglob("mlflow_model.py"))
    original = code.read_text()
    code.write_text(original + "\nimport os  # whatever an attacker adds runs when the model loads\n")
    try:
        with pytest.raises(SystemExit) as exit_info:
            sample.main([run_id, "--length", "5", "--tracking-uri", tracking_uri])
    finally:
        code.write_text(original)
    assert exit_info.value.code == 2
    assert "its files differ from the model_sha256 its run recorded" in capsys.readouterr().err


def test_sampling_to_an_ascii_console_escapes_what_it_cannot_print(language_model_run) -> None:
    import subprocess
    import sys

    from src.paths import PROJECT_ROOT

    tracking_uri, run_id, _ = language_model_run
    result = subprocess.run(
        [sys.executable, "-m", "src.sample", run_id, "--prime", "é→", "--length", "20", "--tracking-uri", tracking_uri],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("\\xe9\\u2192")


def test_a_language_model_run_resolves_its_task_once(compose_cfg, monkeypatch) -> None:
    """The task is looked up once, from the dataset, and the object is passed down: predicting, scoring
    and sampling text (300 predictions) never look it up again."""
    from src import tasks

    looked_up: list[str] = []
    original = tasks.get
    monkeypatch.setattr(tasks, "get", lambda name: looked_up.append(name) or original(name))
    outcome = experiment.run(
        compose_cfg(
            "dataset=chars",
            "dataset.max_chars=3000",
            "dataset.seq_len=16",
            "framework=numpy",
            "model.hidden_size=8",
            "trainer=quick",
            "tracking.log_model=false",
        )
    )
    assert "test_bpc" in outcome.metrics
    assert looked_up == ["language_model"]


def rerun_whole_text(predictor, prime: str, length: int, temperature: float, rng: np.random.Generator) -> str:
    """Sampling as it was before the state was carried: the whole text so far rerun for every character."""
    from src.data.chars import decode, encode

    ids = list(encode(prime, predictor.classes))
    for _ in range(length):
        probabilities = predictor.predict(np.asarray(ids, dtype=np.float32)[None, :, None])[0, -1].astype(np.float64)
        scaled = np.log(np.maximum(probabilities, 1e-300)) / temperature
        odds = np.exp(scaled - scaled.max())
        ids.append(int(rng.choice(len(odds), p=odds / odds.sum())))
    return decode(ids[len(encode(prime, predictor.classes)) :], predictor.classes)


def test_sampling_carries_the_state_and_writes_what_rerunning_the_text_would(language_model_run, monkeypatch) -> None:
    from src.frameworks.numpy import network
    from src.tasks.language_model import generate_text

    tracking_uri, run_id, _ = language_model_run
    predictor = sample.load_language_model(run_id, tracking_uri)  # trained with torch
    expected = rerun_whole_text(predictor, "def ", 60, 0.8, np.random.default_rng(3))
    steps: list[int] = []
    original = network.forward
    monkeypatch.setattr(
        network, "forward", lambda *args, **kwargs: steps.append(args[2].shape[1]) or original(*args, **kwargs)
    )
    assert generate_text(predictor, "def ", 60, 0.8, np.random.default_rng(3)) == expected
    assert steps == [4] + [1] * 59  # the prime once, then one character per step: linear in the length


def test_a_model_without_a_recorded_digest_is_refused(language_model_run, capsys) -> None:
    """Whoever can write the artifact store may also drop the run's digest: no digest, no loading."""
    tracking_uri, run_id, _ = language_model_run
    client = MlflowClient(tracking_uri)
    digest = client.get_run(run_id).data.tags["model_sha256"]
    client.delete_tag(run_id, "model_sha256")
    try:
        with pytest.raises(SystemExit) as exit_info:
            sample.main([run_id, "--length", "5", "--tracking-uri", tracking_uri])
    finally:
        client.set_tag(run_id, "model_sha256", digest)
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: model ") and "has no recorded model_sha256: its files cannot be verified" in line
