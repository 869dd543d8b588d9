"""Language modelling: the next token at every step, from a softmax over the vocabulary.

Inputs are token ids (one-hot encoded inside the network); the network outputs one logit per token of
the vocabulary at every step; a prediction is the next token's probabilities. Metrics over every test
position: loss (mean cross-entropy in nats), perplexity (e^loss) and bits per character
(bpc = loss / ln 2). Baselines, fitted on the training split and add-one smoothed: `unigram` (how often
each token is a target) and `bigram` (how often each token follows the current one).
A trained model writes text with `generate_text`; each run logs a short sample of it.
"""

from __future__ import annotations

import bz2
import lzma
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from src.data.base import Splits
from src.data.chars import decode, encode
from src.data.scaling import Standardizer
from src.frameworks.spec import Head
from src.tasks.probabilities import mean_negative_log_likelihood, softmax
from src.tasks.task import Direction, Task, csv_text

if TYPE_CHECKING:
    from src.evaluation import Evaluation
    from src.predictor import Predictor

SAMPLE_PRIME_LENGTH = 32
SAMPLE_LENGTH = 300
SAMPLE_TEMPERATURE = 0.8
CSV_POSITIONS = 256
# General-purpose compressors at their strongest settings: a language model should beat them.
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "bz2": lambda data: bz2.compress(data, 9),
    "xz": lambda data: lzma.compress(data, preset=9 | lzma.PRESET_EXTREME),
}


def ngram_counts(splits: Splits) -> tuple[np.ndarray, np.ndarray]:
    """How often each token is a training target, and how often token b follows token a (a, b)."""
    size = len(splits.info.classes)
    current = splits.train.x[..., 0].astype(np.int64).ravel()
    following = splits.train.y.astype(np.int64).ravel()
    pairs = np.zeros((size, size))
    np.add.at(pairs, (current, following), 1)
    return np.bincount(following, minlength=size).astype(np.float64), pairs


def generate_text(predictor: Predictor, prime: str, length: int, temperature: float, rng: np.random.Generator) -> str:
    """`length` tokens drawn one at a time after `prime`, each from the model's next-token probabilities
    sharpened (temperature < 1) or flattened (> 1) as p^(1/temperature); the same rng state repeats them.

    The recurrent state is carried from token to token, so the whole text conditions every draw and the
    cost is linear in `length`. Whatever framework trained the model, the steps run in the NumPy network
    on its canonical weights (src/frameworks/spec.py): the same equations the frameworks compute."""
    from src.frameworks.numpy import network

    spec, weights = predictor.backend.spec, predictor.backend.get_weights()
    vocabulary = predictor.classes
    inputs = np.asarray(encode(prime, vocabulary), dtype=np.float32)[None, :, None]
    ids: list[int] = []
    states = None
    for _ in range(length):
        logits, cache = network.forward(weights, spec, inputs, states=states)
        states = network.last_states(cache)
        probabilities = predictor.task.predictions(logits[:, -1], predictor.standardizer)[0].astype(np.float64)
        scaled = np.log(np.maximum(probabilities, 1e-300)) / temperature
        odds = np.exp(scaled - scaled.max())
        ids.append(int(rng.choice(len(odds), p=odds / odds.sum())))
        inputs = np.asarray([[[ids[-1]]]], dtype=np.float32)
    return decode(ids, vocabulary)


def _escaped(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


class LanguageModel(Task):
    name = "language_model"
    metrics: dict[str, Direction] = {"loss": "minimize", "perplexity": "minimize", "bpc": "minimize"}
    rank_by = "bpc"
    loss_label = "cross-entropy (nats per token)"
    head = Head(loss="cross_entropy", token_inputs=True, every_step=True)

    def standardizer(self, splits: Splits, standardize: bool) -> Standardizer:
        """Nothing is scaled: inputs are token ids and targets the next ids."""
        return Standardizer.identity(1, 1)

    def network_sizes(self, splits: Splits) -> tuple[int, int]:
        """Token ids are one-hot encoded over the vocabulary, and scored over it."""
        size = len(splits.info.classes)
        return size, size

    def predictions(self, outputs: np.ndarray, scaler: Standardizer) -> np.ndarray:
        """The next token's probabilities (samples, steps, vocabulary) from the logits."""
        return softmax(outputs)

    def score(self, truth: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
        loss = mean_negative_log_likelihood(truth, probabilities)
        return {"loss": loss, "perplexity": math.exp(loss), "bpc": loss / math.log(2)}

    def baselines(self, splits: Splits, x: np.ndarray) -> dict[str, np.ndarray]:
        unigram_counts, pair_counts = ngram_counts(splits)
        size = len(unigram_counts)
        unigram = (unigram_counts + 1) / (unigram_counts.sum() + size)
        bigram = (pair_counts + 1) / (pair_counts.sum(axis=1, keepdims=True) + size)
        current = x[..., 0].astype(np.int64)
        return {"unigram": np.broadcast_to(unigram, (*current.shape, size)), "bigram": bigram[current]}

    def reference_scores(self, splits: Splits, split: str) -> dict[str, dict[str, float]]:
        """bz2 and xz as language models: what each costs, in bits per character, to compress the split's
        text given the training text (the compressed size of both minus that of the training text alone)."""
        training = decode(splits.train.y.astype(np.int64), splits.info.classes).encode("utf-8")
        text = decode(dict(splits.items())[split].y.astype(np.int64), splits.info.classes)
        if not text:
            return {}
        scores = {}
        for name, compress in COMPRESSORS.items():
            bits = 8 * (len(compress(training + text.encode("utf-8"))) - len(compress(training)))
            bpc = bits / len(text)
            loss = bpc * math.log(2)
            scores[name] = {"loss": loss, "perplexity": math.exp(loss), "bpc": bpc}
        return scores

    def predictions_csv(self, evaluation: Evaluation) -> str:
        """The first test positions: the true next character, the model's likeliest, and each predictor's
        probability of the truth (the whole split's scores are in the metrics)."""
        truth = evaluation.truth.astype(np.int64).ravel()[:CSV_POSITIONS]
        vocabulary = evaluation.classes
        probabilities = {
            name: values.reshape(-1, values.shape[-1])[:CSV_POSITIONS]
            for name, values in evaluation.predictions.items()
        }
        columns: dict[str, object] = {
            "index": np.arange(len(truth)),
            "y_true": [_escaped(vocabulary[token]) for token in truth],
            "y_pred_model": [_escaped(vocabulary[token]) for token in np.argmax(probabilities["model"], axis=1)],
        }
        columns.update(
            {f"p_true_{name}": values[np.arange(len(truth)), truth] for name, values in probabilities.items()}
        )
        return csv_text(columns)

    def artifacts(self, predictor: Predictor, splits: Splits) -> dict[str, str]:
        """A sample of generated text, primed with the start of the test split (fixed seed 0)."""
        prime = decode(splits.test.x[0, :SAMPLE_PRIME_LENGTH, 0].astype(np.int64), predictor.classes)
        text = generate_text(predictor, prime, SAMPLE_LENGTH, SAMPLE_TEMPERATURE, np.random.default_rng(0))
        return {"sample.txt": f"{prime}{text}\n"}
