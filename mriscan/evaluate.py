"""Metrics of a model bundle on labelled folders, with bootstrap confidence intervals.

This is how a site (or a benchmark) measures a model on data it was not trained on: the same
folder-name rules as ``fit``, the same loading and preprocessing as ``scan``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mriscan.calibrate import expected_calibration_error
from mriscan.dataset import find_labelled_files
from mriscan.loader import iter_loaded_chunks
from mriscan.metrics import classification_metrics, safety_net_metrics
from mriscan.model import ModelBundle


@dataclass(frozen=True)
class Predictions:
    """Labels and P(tumor) of every readable image, with where each came from."""

    labels: np.ndarray
    probability: np.ndarray
    sources: np.ndarray
    paths: tuple[Path, ...]
    unreadable: int


def predict_folders(
    bundle: ModelBundle,
    data_dirs: Sequence[Path],
    *,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
    workers: int = -1,
    limit_per_folder: int | None = None,
) -> Predictions:
    """Predict every image of labelled class folders (optionally the first N of each class folder)."""
    files = find_labelled_files(data_dirs, positive, negative)
    if limit_per_folder is not None:
        files = _first_per_folder(files, limit_per_folder)
    label_of = {f.path: f.label for f in files}
    source_of = {f.path: f"{f.source}/{f.class_folder}" for f in files}
    labels, probability, sources, paths, unreadable = [], [], [], [], 0
    for chunk in iter_loaded_chunks([f.path for f in files], bundle.preprocess_config, workers=workers):
        readable = [r for r in chunk if r.ok]
        unreadable += len(chunk) - len(readable)
        if readable:
            probability.extend(bundle.predict(np.stack([r.model_input for r in readable])))
            labels.extend(label_of[r.path] for r in readable)
            sources.extend(source_of[r.path] for r in readable)
            paths.extend(r.path for r in readable)
    return Predictions(np.array(labels, int), np.array(probability, float), np.array(sources), tuple(paths),
                       unreadable)


def _first_per_folder(files: list, limit: int) -> list:
    kept, seen = [], {}
    for f in files:
        key = (f.source, f.class_folder)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= limit:
            kept.append(f)
    return kept


def summarise(labels: np.ndarray, probability: np.ndarray, bundle: ModelBundle, *, seed: int = 2021,
              resamples: int = 1000) -> dict:
    """Metrics at the bundle's thresholds with bootstrap 95% intervals where both classes exist."""
    summary = {
        **classification_metrics(labels, probability, bundle.threshold),
        **safety_net_metrics(labels, probability, bundle.threshold, bundle.review_threshold),
        "ece": expected_calibration_error(labels, probability),
    }
    for name in ("auroc", "sensitivity", "specificity"):
        if summary.get(name) is not None:
            summary[f"{name}_ci95"] = bootstrap_interval(
                labels, probability, lambda y, p, n=name: classification_metrics(y, p, bundle.threshold)[n],
                seed=seed, resamples=resamples)
    return summary


def bootstrap_interval(
    labels: np.ndarray,
    probability: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], float | None],
    *,
    seed: int = 2021,
    resamples: int = 1000,
) -> list[float] | None:
    """Percentile bootstrap 95% interval of ``statistic(labels, probability)``, resampling within class.

    Examples
    --------
    >>> y = np.array([0] * 50 + [1] * 50); p = np.linspace(0, 1, 100)
    >>> low, high = bootstrap_interval(y, p, lambda a, b: float(b[a == 1].mean()), resamples=200)
    >>> low < 0.75 < high
    True
    """
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(labels == c) for c in (0, 1) if (labels == c).any()]
    values = []
    for _ in range(resamples):
        sample = np.concatenate([rng.choice(members, len(members)) for members in classes])
        value = statistic(labels[sample], probability[sample])
        if value is not None:
            values.append(value)
    if not values:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]
