"""Generators: shapes, determinism for a seed, the seed tasks' exact values, and standardisation."""

from __future__ import annotations

import numpy as np
import pytest

from src.data import DATASETS, adding, next_number, sine, sunspots
from src.data import sum as sum_data
from src.data.scaling import Standardizer


def generate(name: str, seed: int = 0, **params):
    module = DATASETS[name]
    return module.generate(module.Params(**params), seed)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_splits_are_three_dimensional_float32_and_disjointly_sized(name: str) -> None:
    splits = generate(name)
    for _, split in splits.items():
        assert split.x.ndim == 3 and split.y.ndim == 2 and len(split) > 0
        assert split.x.dtype == np.float32 and split.y.dtype == np.float32
        assert split.x.shape[1:] == splits.train.x.shape[1:]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_same_seed_same_data_other_seed_other_split(name: str) -> None:
    assert generate(name, seed=3).digest() == generate(name, seed=3).digest()
    if name not in ("sunspots", "chars", "next_number"):  # chronological and fixed: no randomness at all
        assert generate(name, seed=3).digest() != generate(name, seed=4).digest()


def test_next_number_is_the_notebooks_task() -> None:
    splits = next_number.generate(next_number.Params(), seed=0)
    np.testing.assert_array_equal(splits.test.x[:, :, 0], np.arange(120, 130)[:, None] + np.arange(5))
    np.testing.assert_array_equal(splits.test.y[:, 0], np.arange(125, 135))
    starts = np.sort(np.concatenate([splits.train.x[:, 0, 0], splits.val.x[:, 0, 0]]))
    np.testing.assert_array_equal(starts, np.arange(100))
    assert (len(splits.train), len(splits.val)) == (80, 20)
    # Validation is the top of the training range, past every training window: it measures extrapolation.
    np.testing.assert_array_equal(splits.val.x[:, 0, 0], np.arange(80, 100))
    np.testing.assert_array_equal(splits.train.y[:, 0], splits.train.x[:, -1, 0] + 1)
    assert splits.test.x.min() > splits.train.x.max()  # the test split is an extrapolation


def test_sum_targets_are_the_sums_of_ten_uniform_numbers() -> None:
    splits = sum_data.generate(sum_data.Params(), seed=0)
    assert splits.train.x.shape[1:] == (10, 1)
    assert sum(len(split) for _, split in splits.items()) == 1000
    for _, split in splits.items():
        np.testing.assert_allclose(split.y[:, 0], split.x[:, :, 0].sum(axis=1), rtol=1e-6)
        assert split.x.min() >= 0 and split.x.max() < 1


def test_adding_marks_as_many_places_in_each_half_for_an_odd_length() -> None:
    splits = adding.generate(adding.Params(seq_len=7, num_samples=3000), seed=0)
    first, second = (np.argmax(splits.train.x[:, :, 1], axis=1), 6 - np.argmax(splits.train.x[:, ::-1, 1], axis=1))
    assert set(first) == {0, 1, 2} and set(second) == {4, 5, 6}  # 3 places each; the middle step never


def test_test_overlap_counts_test_inputs_seen_in_training() -> None:
    from src.data.base import DatasetInfo, Splits, as_split

    train = as_split(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.0, 1.0]))
    test = as_split(np.array([[1.0, 2.0], [5.0, 6.0], [7.0, 8.0], [3.0, 4.0]]), np.zeros(4))
    assert Splits(train, train, test, DatasetInfo("toy")).test_overlap() == 0.5


def test_adding_marks_exactly_two_steps_one_per_half() -> None:
    splits = adding.generate(adding.Params(seq_len=30, num_samples=500), seed=1)
    x, y = splits.train.x, splits.train.y
    markers = x[:, :, 1]
    assert np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :15].sum(axis=1) == 1) and np.all(markers[:, 15:].sum(axis=1) == 1)
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * markers).sum(axis=1), rtol=1e-6)


def test_sine_targets_continue_the_wave() -> None:
    splits = sine.generate(sine.Params(noise=0.0, num_samples=50), seed=0)
    assert np.abs(splits.train.x).max() <= 1.0 + 1e-6
    # Without noise a sine obeys x[t+1] = 2cos(w) x[t] - x[t-1]; check it holds for the target.
    x, y = splits.train.x[:, :, 0].astype(np.float64), splits.train.y[:, 0].astype(np.float64)
    two_cos = (x[:, 2] + x[:, 0]) / np.where(np.abs(x[:, 1]) > 0.2, x[:, 1], np.nan)
    predicted = two_cos * x[:, -1] - x[:, -2]
    ok = ~np.isnan(predicted)
    np.testing.assert_allclose(predicted[ok], y[ok], atol=1e-4)


def test_sunspots_are_the_shipped_series_split_in_time() -> None:
    splits = sunspots.generate(sunspots.Params(seq_len=12), seed=0)
    total = sum(len(split) for _, split in splits.items())
    assert total == 309 - 12  # 1700-2008, one window per year after the first twelve
    assert splits.train.x[0, 0, 0] == pytest.approx(5.0)  # 1700
    assert splits.test.y[-1, 0] == pytest.approx(2.9, abs=0.05)  # 2008
    # Chronological: each split's first window continues the previous split's last one.
    np.testing.assert_array_equal(splits.val.x[0, :-1, 0], splits.train.x[-1, 1:, 0])
    np.testing.assert_array_equal(splits.test.x[0, :-1, 0], splits.val.x[-1, 1:, 0])


def test_standardizer_fits_train_only_and_inverts_exactly() -> None:
    splits = sum_data.generate(sum_data.Params(), seed=0)
    scaler = Standardizer.fit(splits.train)
    scaled = scaler.transform(splits.train)
    assert abs(float(scaled.x.mean())) < 1e-5 and abs(float(scaled.y.std()) - 1) < 1e-5
    np.testing.assert_allclose(scaler.inverse_y(scaled.y), splits.train.y, rtol=1e-5)
    again = Standardizer.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(again.transform_x(splits.test.x), scaler.transform_x(splits.test.x))
    assert scaler.loss_scale == pytest.approx(float(splits.train.y.std()) ** 2, rel=1e-4)
