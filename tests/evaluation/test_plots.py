"""Tests of mriscan.evaluation.plots: what the ROC and training-curve pictures tell a reader."""

from __future__ import annotations

import numpy as np

from mriscan.evaluation.plots import operating_point, roc_figure, roc_label, training_curves_figure


def _split(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Labels and overlapping probabilities (tumours higher on average, never separated)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    return labels, np.clip(0.2 * labels + rng.uniform(0, 0.7, n), 0, 1)


def test_the_roc_marks_the_operating_point_of_each_curve() -> None:
    labels, probability = _split(0)
    figure = roc_figure({"test": (labels, probability)}, {"test": 0.5})
    axis = figure.axes[0]
    marker = next(line for line in axis.get_lines() if line.get_marker() == "o")
    x, y = operating_point(labels, probability, 0.5)
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (x, y)
    assert 0 < x < 1 and 0 < y < 1
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert f"test at threshold 0.5: sensitivity {y:.2f}, specificity {1 - x:.2f}" in legend


def test_an_roc_legend_gives_n_tumours_and_an_interval() -> None:
    labels, probability = _split(1, n=9)
    label = roc_label("test", labels, probability)
    assert label.startswith("test: n=9, 4 tumours, AUROC ") and label.count("[") == 1
    low, high = (float(value) for value in label.split("[")[1].rstrip("]").split(", "))
    assert high - low > 0.2  # nine images: a wide interval, and the picture says so


def test_training_curves_count_whole_epochs() -> None:
    history = {"loss": [0.7, 0.5], "auc": [0.6, 0.8], "val_auroc": [0.55, 0.75]}
    figure = training_curves_figure(history)
    for axis in figure.axes:
        ticks = [tick for tick in axis.get_xticks() if axis.get_xlim()[0] <= tick <= axis.get_xlim()[1]]
        assert ticks and all(float(tick).is_integer() for tick in ticks)
