"""Each task's metrics and baselines against hand-computed cases, and the new datasets' contents."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, log_loss

from src import tasks
from src.data import chars, parity, sine_class
from src.data.base import DatasetInfo, Splits, as_split
from src.errors import UserError
from src.evaluation import evaluate
from src.tasks.task import Task


def test_classification_metrics_match_a_hand_computed_case() -> None:
    truth = np.array([[0], [0], [1], [2]], dtype=np.float32)
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],  # right (0)
            [0.3, 0.6, 0.1],  # wrong: 1
            [0.2, 0.5, 0.3],  # right (1)
            [0.5, 0.25, 0.25],
        ]
    )  # wrong: 0
    metrics = tasks.get("classification").score(truth, probabilities)
    assert metrics["accuracy"] == pytest.approx(0.5)
    # class 0: tp 1, fp 1, fn 1 → 1/2; class 1: tp 1, fp 1, fn 0 → 2/3; class 2: tp 0, fn 1 → 0.
    assert metrics["f1_macro"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert metrics["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.3) + math.log(0.5) + math.log(0.25)) / 4)
    labels = truth[:, 0].astype(int)
    assert metrics["f1_macro"] == pytest.approx(f1_score(labels, probabilities.argmax(1), average="macro"))
    assert metrics["log_loss"] == pytest.approx(log_loss(labels, probabilities, labels=[0, 1, 2]))


def test_language_model_metrics_are_nats_perplexity_and_bits() -> None:
    truth = np.array([[1, 0]], dtype=np.float32)
    probabilities = np.array([[[0.5, 0.5], [0.25, 0.75]]])  # p(truth) = 1/2, 1/4
    metrics = tasks.get("language_model").score(truth, probabilities)
    assert metrics["loss"] == pytest.approx(math.log(8) / 2)  # -(ln 1/2 + ln 1/4) / 2
    assert metrics["perplexity"] == pytest.approx(math.sqrt(8))
    assert metrics["bpc"] == pytest.approx(1.5)  # 1 bit and 2 bits


def tiny_corpus() -> Splits:
    """Vocabulary (?, a, b); training text "abab" + "abba" as two sequences of 3 steps, test "ba"."""
    vocabulary = [chars.UNKNOWN, "a", "b"]
    train = chars.sequences(chars.encode("abab", vocabulary), 3)
    train = as_split(
        np.concatenate([train.x[..., 0], chars.sequences(chars.encode("abba", vocabulary), 3).x[..., 0]]),
        np.concatenate([train.y, chars.sequences(chars.encode("abba", vocabulary), 3).y]),
    )
    test = chars.sequences(chars.encode("bab", vocabulary), 2)
    return Splits(train, test, test, DatasetInfo("tiny", task="language_model", classes=vocabulary))


def test_unigram_and_bigram_are_add_one_smoothed_counts_of_the_training_split() -> None:
    splits = tiny_corpus()
    # Training pairs (current → next): a→b, b→a, a→b from "abab"; a→b, b→b, b→a from "abba".
    # Targets: b a b b b a → counts (?, a, b) = (0, 2, 4) of 6.
    language_model = tasks.get("language_model")
    predicted = language_model.baselines(splits, splits.test.x)
    np.testing.assert_allclose(predicted["unigram"][0, 0], [1 / 9, 3 / 9, 5 / 9])
    # After b: b→a twice, b→b once, of 3; after a: a→b three times, of 3.
    np.testing.assert_allclose(predicted["bigram"][0, 0], [1 / 6, 3 / 6, 2 / 6])  # test input b
    np.testing.assert_allclose(predicted["bigram"][0, 1], [1 / 6, 1 / 6, 4 / 6])  # test input a
    uniform = np.full((1, 2, 3), 1 / 3)  # a model that knows nothing: log2(3) bits per character
    evaluation = evaluate(language_model, splits, uniform)
    # Test targets "ab" after "ba": p(a | b) = 1/2, p(b | a) = 2/3.
    assert evaluation.flat()["baseline_bigram_test_bpc"] == pytest.approx(-(math.log2(1 / 2) + math.log2(2 / 3)) / 2)
    assert evaluation.flat()["test_bpc"] == pytest.approx(math.log2(3))
    # Best first: bigram (0.79 bits) beats the unigram (1.08) beats the uniform model (1.58).
    rows = evaluation.table().splitlines()[2:]
    ranked = [row.split()[0 if row.startswith("model") else 1] for row in rows]
    assert [name for name in ranked if name not in ("bz2", "xz")] == ["bigram", "unigram", "model"]
    assert {"baseline_bz2_test_bpc", "baseline_xz_test_bpc"} <= set(evaluation.flat())  # 2 characters: noise


def test_compressor_baselines_cost_the_test_text_given_the_training_text() -> None:
    import bz2
    import lzma

    splits = chars.generate(chars.Params(max_chars=40_000), seed=0)
    scores = tasks.get("language_model").reference_scores(splits, "test")
    training = chars.decode(splits.train.y.astype(np.int64), splits.info.classes).encode()
    test = chars.decode(splits.test.y.astype(np.int64), splits.info.classes)
    expected = 8 * (len(bz2.compress(training + test.encode(), 9)) - len(bz2.compress(training, 9))) / len(test)
    assert scores["bz2"]["bpc"] == pytest.approx(expected)
    assert scores["bz2"]["loss"] == pytest.approx(expected * math.log(2))
    assert 1.0 < scores["xz"]["bpc"] < 4.0 and 1.0 < scores["bz2"]["bpc"] < 4.0  # Python source: about 2 bits
    alone = 8 * len(lzma.compress(test.encode(), preset=9 | lzma.PRESET_EXTREME)) / len(test)
    assert scores["xz"]["bpc"] < alone  # the training text helps the compressor, as it helps the model


def test_majority_predicts_the_training_frequencies_and_logistic_separates_a_linear_case() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] + x[:, 2] > 0.5).astype(int)
    split = as_split(x, y)
    splits = Splits(split, split, split, DatasetInfo("linear", task="classification", classes=["no", "yes"]))
    classification = tasks.get("classification")
    predicted = classification.baselines(splits, split.x)
    np.testing.assert_allclose(predicted["majority"][0], [np.mean(y == 0), np.mean(y == 1)])
    assert classification.score(split.y, predicted["logistic"])["accuracy"] > 0.95
    flat = evaluate(classification, splits, predicted["logistic"]).flat()
    assert {
        "test_accuracy",
        "test_f1_macro",
        "test_log_loss",
        "baseline_majority_test_accuracy",
        "baseline_logistic_test_log_loss",
    } <= set(flat)


def test_tasks_are_registered_by_name_and_their_objectives_carry_directions() -> None:
    for name, task in tasks.TASKS.items():
        assert task.name == name and task.rank_by in task.metrics
        assert set(task.score(*example_scores(task))) == set(task.metrics)
    assert tasks.objective_direction("test_accuracy") == "maximize" and tasks.worst_value("test_accuracy") == -math.inf
    assert tasks.objective_direction("test_bpc") == "minimize" and tasks.worst_value("val_loss") == math.inf
    assert tasks.headline_metrics() == {"test_mse": False, "test_accuracy": True, "test_bpc": False}
    assert tasks.get("language_model").head.every_step and not tasks.get("classification").head.every_step
    with pytest.raises(UserError, match="unknown task 'ranking'"):
        tasks.get("ranking")


def example_scores(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """Two samples of truth and predictions shaped as `task` scores them."""
    if task.head.every_step:
        return np.array([[1, 0]], dtype=np.float32), np.array([[[0.5, 0.5], [0.25, 0.75]]])
    if task.head.loss == "cross_entropy":
        return np.array([[0], [1]], dtype=np.float32), np.array([[0.8, 0.2], [0.4, 0.6]])
    return np.array([[1.0], [2.0]]), np.array([[1.5], [2.5]])


def test_parity_labels_count_the_ones() -> None:
    splits = parity.generate(parity.Params(seq_len=5, num_samples=200), seed=0)
    for _, split in splits.items():
        np.testing.assert_array_equal(split.y[:, 0], split.x[:, :, 0].sum(axis=1) % 2)
    assert splits.info.task == "classification" and splits.info.classes == ["even", "odd"]


@pytest.mark.parametrize("seq_len, num_samples", [(5, 200), (8, 2000), (12, 2000), (40, 300)])
def test_parity_never_tests_or_validates_on_a_training_string(seq_len: int, num_samples: int) -> None:
    splits = parity.generate(parity.Params(seq_len=seq_len, num_samples=num_samples), seed=0)
    rows = {name: [row.tobytes() for row in split.x.astype(np.int8)] for name, split in splits.items()}
    assert not set(rows["train"]) & set(rows["test"]) and not set(rows["train"]) & set(rows["val"])
    assert not set(rows["val"]) & set(rows["test"])
    assert len(set(rows["test"])) == len(rows["test"])  # each held-out string once
    assert sum(len(split) for _, split in splits.items()) == num_samples
    assert splits.test_overlap() == 0.0
    held_out = len(splits.test) + len(splits.val)  # fractions of the strings there can be: 15% of 32 at 5 bits
    assert held_out == 2 * round(0.15 * min(num_samples, 2**seq_len))


def test_sine_class_draws_three_balanced_shapes_in_range() -> None:
    splits = sine_class.generate(sine_class.Params(noise=0.0, num_samples=600), seed=0)
    labels = np.concatenate([split.y[:, 0] for _, split in splits.items()]).astype(int)
    assert len(np.bincount(labels)) == 3 and np.bincount(labels).min() > 150
    x, y = splits.train.x[:, :, 0], splits.train.y[:, 0]
    assert np.abs(x).max() <= 1.0 + 1e-6
    np.testing.assert_array_equal(np.unique(np.abs(x[y == 1])), [1.0])  # a square wave is ±1 without noise


def test_chars_default_corpus_is_split_in_time_with_a_training_vocabulary() -> None:
    params = chars.Params(max_chars=20_000, seq_len=50)
    splits = chars.generate(params, seed=0)
    assert splits.digest() == chars.generate(params, seed=5).digest()  # a fixed text: no randomness
    vocabulary = splits.info.classes
    text = chars.default_corpus()[:20_000]
    assert vocabulary[0] == chars.UNKNOWN and vocabulary[1:] == sorted(set(text[:16_000]))
    assert splits.train.x.shape == (319, 50, 1) and splits.train.y.shape == (319, 50)
    assert chars.decode(splits.train.x[0, :, 0], vocabulary) == text[:50]
    assert chars.decode(splits.train.y[0], vocabulary) == text[1:51]
    assert chars.decode(splits.test.x[0, :, 0], vocabulary).replace(chars.UNKNOWN, "?") == "".join(
        c if c in vocabulary else "?" for c in text[18_000:18_050]
    )


def test_chars_reads_a_text_file_and_names_a_missing_one(tmp_path) -> None:
    path = tmp_path / "poem.txt"
    path.write_text("the cat sat on the mat, " * 40 + "é", encoding="utf-8")
    splits = chars.generate(chars.Params(path=str(path), seq_len=10), seed=0)
    assert "é" not in splits.info.classes  # only in the test split: it reads as unknown there
    assert splits.test.x[..., 0].max() < len(splits.info.classes)
    with pytest.raises(UserError, match="dataset.path='missing.txt': no such file: .*missing.txt"):
        chars.generate(chars.Params(path="missing.txt"), seed=0)
    with pytest.raises(UserError, match="dataset.seq_len"):
        chars.generate(chars.Params(path=str(path), seq_len=500), seed=0)
