"""The bench's bare scripts (benchmarks/bare/) train and test on exactly the workflow's arrays: the
comparison of issue 16 is only fair if both sides do the same job on the same data, test split included."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bare import common
from benchmarks.workflow import check_bare_data
from src.data import sine
from src.data.scaling import Standardizer


def test_the_bare_scripts_splits_are_the_workflows_to_the_bit() -> None:
    check_bare_data()


def test_the_bare_test_mse_is_in_the_datas_units() -> None:
    splits = common.sine_splits()
    workflow = sine.generate(sine.Params(num_samples=common.NUM_SAMPLES, seq_len=common.SEQ_LEN), seed=common.SEED)
    scaler = Standardizer.fit(workflow.train)
    # A constant prediction of the standardised mean: its MSE in the data's units is the test targets' spread.
    standardised = float(np.mean((splits.test_y - scaler.transform(workflow.train).y.mean()) ** 2))
    in_units = float(np.mean((workflow.test.y - workflow.train.y.mean()) ** 2))
    assert standardised * splits.y_std**2 == pytest.approx(in_units, rel=1e-4)


def test_a_changed_split_is_caught(monkeypatch) -> None:
    original = common.sine_splits

    def shuffled_test() -> common.SineSplits:
        splits = original()
        return splits._replace(test_x=splits.test_x[::-1].copy())

    monkeypatch.setattr(common, "sine_splits", shuffled_test)
    with pytest.raises(AssertionError, match="test x"):
        check_bare_data()
