"""Metrics against hand-computed cases, and the baselines' predictions."""

from __future__ import annotations

import numpy as np
import pytest

from src import tasks
from src.data import next_number
from src.data.base import as_split
from src.evaluation import evaluate
from src.tasks.regression import baseline_predictions, regression_metrics


def test_metrics_match_a_hand_computed_case() -> None:
    truth = np.array([[1.0], [2.0], [3.0], [4.0]])
    prediction = np.array([[1.0], [3.0], [2.0], [6.0]])  # errors 0, 1, -1, 2
    metrics = regression_metrics(truth, prediction)
    assert metrics["mse"] == pytest.approx(6 / 4)
    assert metrics["rmse"] == pytest.approx(np.sqrt(1.5))
    assert metrics["mae"] == pytest.approx(1.0)
    assert metrics["r2"] == pytest.approx(1 - 6 / 5)  # total sum of squares around 2.5 is 5


def test_baselines_last_mean_and_linear() -> None:
    train = as_split(np.array([[1, 2], [2, 4], [3, 6]], dtype=float), np.array([3, 6, 9]))
    x = np.array([[[10.0], [20.0]]])
    predicted = baseline_predictions(train, x, target_feature=0)
    assert predicted["last"][0, 0] == 20.0
    assert predicted["mean"][0, 0] == pytest.approx(6.0)
    assert predicted["linear"][0, 0] == pytest.approx(30.0)  # y = 3 * x0 fits exactly


def test_linear_baseline_is_exact_on_next_number_and_named_for_mlflow() -> None:
    splits = next_number.generate(next_number.Params(), seed=0)
    evaluation = evaluate(tasks.get("regression"), splits, np.full_like(splits.test.y, 130.0))
    flat = evaluation.flat()
    assert flat["baseline_linear_test_mse"] < 1e-8
    assert flat["baseline_last_test_mae"] == pytest.approx(1.0)
    assert flat["test_mae"] == pytest.approx(np.mean(np.abs(np.arange(125, 135) - 130.0)))
    assert set(flat) >= {"test_mse", "test_rmse", "test_mae", "test_r2", "baseline_mean_test_mse"}
    table = evaluation.table().splitlines()
    assert table[2].startswith("baseline linear")  # best first
