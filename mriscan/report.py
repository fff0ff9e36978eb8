"""Pictures of what a fit learned: training curves, confusion matrix, ROC curve (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

_PNG_METADATA = {"Software": None}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(history: Mapping[str, Sequence[float]], path: Path) -> None:
    """Loss and AUROC per epoch, training and validation."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    left.plot(epochs, history.get("loss", []), label="training loss")
    left.set_xlabel("epoch")
    left.legend()
    right.plot(epochs, history.get("auc", []), label="training AUROC (augmented)")
    right.plot(np.arange(1, len(history.get("val_auroc", [])) + 1), history.get("val_auroc", []),
               label="validation AUROC")
    right.set_xlabel("epoch")
    right.set_ylim(0.4, 1.0)
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata=_PNG_METADATA)
    plt.close(figure)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], title: str, path: Path) -> None:
    """A 2x2 confusion matrix with counts (rows: truth; columns: prediction)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4, 3.6))
    values = np.asarray(matrix)
    axis.imshow(values, cmap="Blues")
    names = ["no_tumor", "tumor"]
    axis.set_xticks([0, 1], names)
    axis.set_yticks([0, 1], names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("truth")
    for (row, col), count in np.ndenumerate(values):
        colour = "white" if count > values.max() / 2 else "black"
        axis.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=14)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata=_PNG_METADATA)
    plt.close(figure)


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """ROC curves, one per named split: ``{name: (labels, probability)}``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 4.2))
    for name, (labels, probability) in curves.items():
        if 0 < np.sum(labels) < len(labels):
            fpr, tpr, _ = roc_curve(labels, probability)
            axis.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(labels, probability):.3f})")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel("sensitivity")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata=_PNG_METADATA)
    plt.close(figure)
