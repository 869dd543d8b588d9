"""Classification: one label per sequence, from a softmax over the classes at the last step.

The network outputs one logit per class; a prediction is the class probabilities, and the predicted
label their argmax. Metrics: accuracy, macro F1 (the unweighted mean over the classes that occur in
the truth or the predictions, as scikit-learn's f1_score), log loss (mean cross-entropy in nats).
Baselines, fitted on the training split: `majority` predicts the training class frequencies (so its
label is the most frequent class), `logistic` is a logistic regression on the flattened window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from src import plots
from src.data.base import Splits
from src.data.scaling import Standardizer
from src.frameworks.spec import Head
from src.tasks.probabilities import mean_negative_log_likelihood, softmax
from src.tasks.task import Direction, Task, csv_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from src.evaluation import Evaluation


def labels_of(truth: np.ndarray) -> np.ndarray:
    """Integer labels from targets shaped (samples, 1)."""
    return np.asarray(truth).reshape(len(truth)).astype(np.int64)


class Classification(Task):
    name = "classification"
    metrics: dict[str, Direction] = {"accuracy": "maximize", "f1_macro": "maximize", "log_loss": "minimize"}
    rank_by = "accuracy"
    loss_label = "cross-entropy (nats)"
    head = Head(loss="cross_entropy")

    def standardizer(self, splits: Splits, standardize: bool) -> Standardizer:
        """Inputs only (when asked): the targets are class indices and stay as they are."""
        num_features = splits.num_features
        if not standardize:
            return Standardizer.identity(num_features, 1)
        fitted = Standardizer.fit(splits.train)
        return Standardizer(fitted.x_mean, fitted.x_std, np.zeros(1), np.ones(1))

    def network_sizes(self, splits: Splits) -> tuple[int, int]:
        return splits.num_features, len(splits.info.classes)

    def predictions(self, outputs: np.ndarray, scaler: Standardizer) -> np.ndarray:
        """Class probabilities (samples, classes) from the logits."""
        return softmax(outputs)

    def score(self, truth: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
        labels = labels_of(truth)
        predicted = np.argmax(probabilities, axis=1)
        f1_scores = []
        for label in np.union1d(labels, predicted):
            true_positives = np.sum((predicted == label) & (labels == label))
            false_positives = np.sum((predicted == label) & (labels != label))
            false_negatives = np.sum((predicted != label) & (labels == label))
            f1_scores.append(2 * true_positives / (2 * true_positives + false_positives + false_negatives))
        return {
            "accuracy": float(np.mean(predicted == labels)),
            "f1_macro": float(np.mean(f1_scores)),
            "log_loss": mean_negative_log_likelihood(labels, probabilities),
        }

    def baselines(self, splits: Splits, x: np.ndarray) -> dict[str, np.ndarray]:
        from sklearn.linear_model import LogisticRegression  # imported here: only this task needs it

        num_classes = len(splits.info.classes)
        labels = labels_of(splits.train.y)
        prior = np.bincount(labels, minlength=num_classes) / len(labels)
        majority = np.broadcast_to(prior, (len(x), num_classes))
        if len(np.unique(labels)) < 2:  # nothing to tell apart: logistic regression cannot be fitted
            return {"majority": majority, "logistic": majority}
        model = LogisticRegression(max_iter=2000).fit(splits.train.x.reshape(len(labels), -1), labels)
        logistic = np.zeros((len(x), num_classes))
        logistic[:, model.classes_] = model.predict_proba(x.reshape(len(x), -1))
        return {"majority": majority, "logistic": logistic}

    def predictions_csv(self, evaluation: Evaluation) -> str:
        """True label, every predictor's label, and the model's probability of each class, per test sample."""
        columns: dict[str, np.ndarray] = {
            "index": np.arange(len(evaluation.truth)),
            "y_true": labels_of(evaluation.truth),
        }
        columns.update({f"y_pred_{name}": np.argmax(values, axis=1) for name, values in evaluation.predictions.items()})
        model = evaluation.predictions["model"]
        columns.update({f"p_model_{name}": model[:, index] for index, name in enumerate(evaluation.classes)})
        return csv_text(columns)

    def figures(self, evaluation: Evaluation, title: str) -> dict[str, Figure]:
        predicted = np.argmax(evaluation.predictions["model"], axis=1)
        return {
            "plots/confusion_matrix.png": plots.confusion_matrix(
                labels_of(evaluation.truth), predicted, evaluation.classes, title
            )
        }
