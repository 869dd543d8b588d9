"""The run's figures: loss curves, predictions against the truth, a confusion matrix (matplotlib, no display)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from src.frameworks.training import FitResult


def _figure(width: float = 6.4, height: float = 4.0) -> Figure:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    return Figure(figsize=(width, height), layout="constrained")


def loss_curve(fit: FitResult, title: str, ylabel: str = "MSE (original units)") -> Figure:
    figure = _figure()
    axes = figure.add_subplot()
    epochs = [result.epoch for result in fit.history]
    axes.plot(epochs, [result.train_loss for result in fit.history], label="train_loss")
    axes.plot(epochs, [result.val_loss for result in fit.history], label="val_loss")
    axes.axvline(fit.best_epoch, color="grey", linestyle=":", label=f"best epoch {fit.best_epoch}")
    positive = all(r.train_loss > 0 and r.val_loss > 0 for r in fit.history)
    axes.set_yscale("log" if positive else "linear")
    axes.set(xlabel="epoch", ylabel=ylabel, title=title)
    axes.legend()
    return figure


def predictions_vs_truth(truth: np.ndarray, predictions: dict[str, np.ndarray], title: str) -> Figure:
    figure = _figure(5.5, 5.0)
    axes = figure.add_subplot()
    for name, values in predictions.items():
        style = {"s": 18, "zorder": 3} if name == "model" else {"s": 8, "alpha": 0.5}
        axes.scatter(truth[:, 0], np.asarray(values)[:, 0], label=name, **style)
    low, high = float(np.min(truth)), float(np.max(truth))
    axes.plot([low, high], [low, high], color="black", linewidth=0.8, label="truth")
    axes.set(xlabel="truth", ylabel="prediction", title=title)
    axes.legend()
    return figure


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: list[str], title: str) -> Figure:
    """Counts of (true class, predicted class), with each cell's count written in it."""
    size = len(classes)
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    figure = _figure(1.6 + 0.7 * size, 1.2 + 0.7 * size)
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        dark = count > counts.max() / 2
        axes.text(column, row, str(count), ha="center", va="center", color="white" if dark else "black")
    axes.set_xticks(range(size), classes, rotation=45, ha="right")
    axes.set_yticks(range(size), classes)
    axes.set(xlabel="predicted", ylabel="true", title=title)
    figure.colorbar(image, ax=axes)
    return figure


def warm_up() -> None:
    """Draw and save, in memory, figures like a run's. The first figure a process saves loads fonts,
    mathtext and the Agg renderer: measured in a torch run, the two figures logged after training took
    0.9 s cold against about 0.4 s warm. A run with a training process does this while the child
    trains, so that cost no longer comes after training (and not at all once training has ended)."""
    import io

    from src.frameworks.checkpoint import EpochResult
    from src.frameworks.training import FitResult

    history = [EpochResult(epoch, 1.0 / epoch, 2.0 / epoch, 0.0) for epoch in (1, 2, 3)]
    values = np.linspace(0.0, 1.0, 8).reshape(-1, 1)
    for figure in (
        loss_curve(FitResult(history, 3, False), "warm-up"),
        predictions_vs_truth(values, {"model": values, "mean": values}, "warm-up"),
    ):
        figure.savefig(io.BytesIO(), format="png")
