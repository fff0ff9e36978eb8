"""Pictures of what a fit learned or an evaluation measured: training curves, confusion matrix, ROC
curves, reliability diagram (matplotlib, Agg).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    figure = training_curves_figure(history)
    figure.savefig(path, dpi=100, metadata=_PNG_METADATA)
    plt.close(figure)


def training_curves_figure(history: Mapping[str, Sequence[float]]) -> Any:
    """The figure of :func:`plot_training_curves`; epochs are whole numbers on both axes."""
    from matplotlib.ticker import MaxNLocator

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
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return figure


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


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path,
             thresholds: Mapping[str, float] | None = None) -> None:
    """ROC curves, one per named split: ``{name: (labels, probability)}`` (see :func:`roc_figure`)."""
    plt = _pyplot()
    figure = roc_figure(curves, thresholds)
    figure.savefig(path, dpi=100, metadata=_PNG_METADATA)
    plt.close(figure)


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
               thresholds: Mapping[str, float] | None = None) -> Any:
    """ROC curves labelled with n, tumours and AUROC with its 95% interval; each curve's operating
    point (its ``thresholds`` entry: the model's decision threshold) is marked on it."""
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.6, 5.0))
    for name, (labels, probability) in curves.items():
        labels, probability = np.asarray(labels), np.asarray(probability)
        if not 0 < np.sum(labels) < len(labels):
            continue
        fpr, tpr, _ = roc_curve(labels, probability)
        line = axis.plot(fpr, tpr, label=roc_label(name, labels, probability))[0]
        if thresholds is not None and name in thresholds:
            x, y = operating_point(labels, probability, thresholds[name])
            axis.plot([x], [y], marker="o", markersize=8, color=line.get_color(), linestyle="none",
                      label=f"{name} at threshold {thresholds[name]:.3g}: sensitivity {y:.2f}, specificity {1 - x:.2f}")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel("sensitivity")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def roc_label(name: str, labels: np.ndarray, probability: np.ndarray) -> str:
    """A curve's legend: how many images and tumours it rests on, and its AUROC with a 95% interval.

    Examples
    --------
    >>> roc_label("test", np.array([0, 0, 1, 1] * 10), np.array([0.1, 0.4, 0.35, 0.8] * 10))
    'test: n=40, 20 tumours, AUROC 0.750 [0.545, 0.891]'
    """
    from sklearn.metrics import roc_auc_score

    from mriscan.evaluation.evaluate import bootstrap_interval

    interval = bootstrap_interval(labels, probability, lambda y, p: float(roc_auc_score(y, p)), resamples=300)
    shown = f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
    return (f"{name}: n={len(labels)}, {int(np.sum(labels))} tumours, "
            f"AUROC {roc_auc_score(labels, probability):.3f}{shown}")


def operating_point(labels: np.ndarray, probability: np.ndarray, threshold: float) -> tuple[float, float]:
    """(1 - specificity, sensitivity) of the decision ``probability >= threshold``.

    Examples
    --------
    >>> operating_point(np.array([0, 0, 1, 1]), np.array([0.2, 0.6, 0.4, 0.9]), 0.5)
    (0.5, 0.5)
    """
    called = np.asarray(probability) >= threshold
    labels = np.asarray(labels).astype(bool)
    return float(called[~labels].mean()), float(called[labels].mean())


def plot_reliability(bins: Sequence[Mapping[str, float | None]], path: Path) -> None:
    """A reliability diagram: observed tumour rate against mean P(tumour) per bin, with bin counts.

    ``bins`` are :func:`mriscan.model.calibrate.reliability_bins` records; empty bins are not drawn.
    """
    plt = _pyplot()
    figure, (curve, counts) = plt.subplots(2, 1, figsize=(4.5, 5.2), sharex=True,
                                           gridspec_kw={"height_ratios": [3, 1]})
    filled = [b for b in bins if b["count"]]
    curve.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    curve.plot([b["mean_probability"] for b in filled], [b["tumour_rate"] for b in filled], marker="o",
               label="model")
    curve.set_ylabel("observed tumour rate")
    curve.set_ylim(-0.02, 1.02)
    curve.legend(loc="upper left")
    counts.bar([(b["lower"] + b["upper"]) / 2 for b in bins], [b["count"] for b in bins],
               width=[0.9 * (b["upper"] - b["lower"]) for b in bins], color="grey")
    counts.set_xlabel("predicted P(tumour)")
    counts.set_ylabel("images")
    counts.set_xlim(0, 1)
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata=_PNG_METADATA)
    plt.close(figure)
