"""Same config and seed, same numbers: exactly for numpy and torch on CPU, within 1e-6 for keras."""

from __future__ import annotations

import pytest

from src import experiment
from tests.conftest import QUICK

TIMINGS = {"train_seconds"}


@pytest.mark.parametrize("framework, tolerance", [("numpy", 0.0), ("torch", 0.0), ("keras", 1e-6)])
def test_same_config_and_seed_twice_give_the_same_metrics(compose_cfg, framework: str, tolerance: float) -> None:
    config = [
        f"framework={framework}",
        "model=gru",
        "model.num_layers=2",
        "model.dropout=0.2",
        "dataset=sine",
        "dataset.num_samples=200",
        "tracking.log_model=false",
        *QUICK,
    ]
    cfg = compose_cfg(*config)
    first, second = experiment.run(cfg), experiment.run(cfg)
    names = set(first.metrics) - TIMINGS
    assert names == set(second.metrics) - TIMINGS and "test_mse" in names
    for name in names:
        assert first.metrics[name] == pytest.approx(second.metrics[name], rel=tolerance, abs=tolerance), name
    other_seed = experiment.run(compose_cfg(*config, "trainer.seed=1"))
    assert other_seed.metrics["best_val_loss"] != first.metrics["best_val_loss"]


def test_a_run_leaves_global_random_state_as_it_found_it(compose_cfg) -> None:
    import random

    import numpy as np
    import torch

    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    experiment.run(
        compose_cfg("framework=torch", "dataset=sum", "dataset.num_samples=200", "tracking.log_model=false", *QUICK)
    )
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected
