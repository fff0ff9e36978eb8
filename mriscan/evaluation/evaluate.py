"""Metrics of a model bundle on labelled folders, with bootstrap confidence intervals.

This is how a site (or a benchmark) measures a model on data it was not trained on: the same
folder-name rules as ``fit``, the same loading and preprocessing as ``scan``. Each image is also
checked against the fingerprints of the images each model was trained and validated on
(``mriscan/evaluation/training_copies.py`` decides what to do with the copies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mriscan.data.dataset import CLASS_NAMES, LabelledFile, find_labelled_files
from mriscan.data.loader import LoadedImage, iter_loaded_chunks
from mriscan.data.preprocess import PreprocessConfig
from mriscan.dedup.index import thumbnails
from mriscan.evaluation.metrics import classification_metrics, safety_net_metrics
from mriscan.model.bundle import ModelBundle
from mriscan.model.calibrate import expected_calibration_error
from mriscan.model.lineage import folder_fingerprints

INTERVAL_METRICS = ("auroc", "sensitivity", "specificity", "accuracy", "tumors_predicted_or_flagged",
                    "flagged_share", "ece")


@dataclass(frozen=True)
class LabelledData:
    """Labelled class folders to measure models on (the folder-name rules of ``fit``).

    ``include_training_copies`` keeps images that copy a model's training images in the figures
    (by default they are left out, and counted).
    """

    dirs: tuple[Path, ...]
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    workers: int = -1
    include_training_copies: bool = False


@dataclass(frozen=True)
class Predictions:
    """Labels and P(tumor) of every readable image, with where each came from."""

    labels: np.ndarray
    probability: np.ndarray
    sources: np.ndarray
    paths: tuple[Path, ...]
    unreadable: int


@dataclass(frozen=True)
class SharedPredictions:
    """Several models' P(tumor) for the same readable images (one row of ``probabilities`` per model).

    ``fingerprints`` are :func:`mriscan.model.lineage.folder_fingerprints` of the folders read;
    ``loading_passes`` is 1 when every model shares one preprocessing, so images were read once.
    ``training_copies`` holds, per model, what each image is of the images that model was trained
    and validated on (``"exact"`` or ``"near"`` copy, or ``""``), or None when its bundle keeps no
    fingerprints of them.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    sources: np.ndarray
    paths: tuple[Path, ...]
    frames: tuple[int | None, ...]
    unreadable: int
    fingerprints: list[dict]
    loading_passes: int
    training_copies: tuple[tuple[str, ...] | None, ...] = ()


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
    shared = _predict_files([bundle], files, data_dirs, workers)
    return Predictions(shared.labels, shared.probabilities[0], shared.sources, shared.paths, shared.unreadable)


def predict_folders_shared(bundles: Sequence[ModelBundle], data: LabelledData) -> SharedPredictions:
    """Predict every image of labelled class folders with each bundle, on the same images.

    Bundles with the same preprocessing share one loading pass; others get their own, and only
    images every bundle could read are kept.
    """
    files = find_labelled_files(data.dirs, data.positive, data.negative)
    return _predict_files(bundles, files, data.dirs, data.workers)


def _predict_files(bundles: Sequence[ModelBundle], files: list[LabelledFile], data_dirs: Sequence[Path],
                   workers: int) -> SharedPredictions:
    label_of = {f.path: f.label for f in files}
    source_of = {f.path: f"{f.source}/{f.class_folder}" for f in files}
    sha256_of: dict[Path, str] = {}
    failed: set[tuple[Path, int | None]] = set()
    scored: list[dict[tuple[Path, int | None], float]] = [{} for _ in bundles]
    copied: list[dict[tuple[Path, int | None], str]] = [{} for _ in bundles]
    passes = _bundles_by_preprocessing(bundles)
    for config, members in passes.items():
        for chunk in iter_loaded_chunks([f.path for f in files], config, workers=workers):
            sha256_of.update((r.path, r.sha256) for r in chunk)
            failed.update((r.path, r.frame) for r in chunk if not r.ok)
            readable = [r for r in chunk if r.ok and not r.outside_head]  # as fit: slices in the head only
            if readable:
                _score_chunk(readable, [bundles[i] for i in members], [scored[i] for i in members],
                             [copied[i] for i in members])
    keys = [key for key in scored[0] if all(key in s for s in scored[1:])]
    unreadable = len(failed | ({key for s in scored for key in s} - set(keys)))
    return SharedPredictions(
        labels=np.array([label_of[path] for path, _ in keys], int),
        probabilities=np.array([[s[key] for key in keys] for s in scored], float).reshape(len(bundles), len(keys)),
        sources=np.array([source_of[path] for path, _ in keys]),
        paths=tuple(path for path, _ in keys),
        frames=tuple(frame for _, frame in keys),
        unreadable=unreadable,
        fingerprints=folder_fingerprints(
            data_dirs, [(f.path, CLASS_NAMES[f.label], sha256_of.get(f.path, "")) for f in files]),
        loading_passes=len(passes),
        training_copies=tuple(None if bundle.training_fingerprints is None else tuple(c[key] for key in keys)
                              for bundle, c in zip(bundles, copied, strict=True)),
    )


def _score_chunk(readable: list[LoadedImage], bundles: Sequence[ModelBundle],
                 scored: Sequence[dict[tuple[Path, int | None], float]],
                 copied: Sequence[dict[tuple[Path, int | None], str]]) -> None:
    """Each bundle's P(tumor) for the readable images of a chunk, and what each image is of its training images."""
    batch = np.stack([r.model_input for r in readable])
    batch_keys = [(r.path, r.frame) for r in readable]
    thumbs = thumbnails(batch) if any(b.training_fingerprints is not None for b in bundles) else None
    for bundle, probabilities, copies in zip(bundles, scored, copied, strict=True):
        probabilities.update(zip(batch_keys, bundle.predict(batch), strict=True))
        if bundle.training_fingerprints is not None:
            kinds = bundle.training_fingerprints.copies([r.image_key for r in readable], thumbs)
            copies.update(zip(batch_keys, kinds, strict=True))


def _bundles_by_preprocessing(bundles: Sequence[ModelBundle]) -> dict[PreprocessConfig, list[int]]:
    groups: dict[PreprocessConfig, list[int]] = {}
    for i, bundle in enumerate(bundles):
        groups.setdefault(bundle.preprocess_config, []).append(i)
    return groups


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
    """Metrics at the bundle's thresholds, with bootstrap 95% intervals where both classes exist."""

    def measure(y: np.ndarray, p: np.ndarray) -> dict:
        return {
            **classification_metrics(y, p, bundle.threshold),
            **safety_net_metrics(y, p, bundle.threshold, bundle.review_threshold),
            "ece": expected_calibration_error(y, p),
        }

    summary = measure(labels, probability)
    names = [name for name in INTERVAL_METRICS if summary.get(name) is not None]
    intervals = bootstrap_intervals(labels, probability, measure, names, seed=seed, resamples=resamples)
    summary.update({f"{name}_ci95": intervals[name] for name in names})
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
    return bootstrap_intervals(labels, probability, lambda y, p: {"value": statistic(y, p)}, ["value"],
                               seed=seed, resamples=resamples)["value"]


def bootstrap_intervals(
    labels: np.ndarray,
    probability: np.ndarray,
    statistics: Callable[[np.ndarray, np.ndarray], Mapping[str, float | None]],
    names: Sequence[str],
    *,
    seed: int = 2021,
    resamples: int = 1000,
) -> dict[str, list[float] | None]:
    """Percentile bootstrap 95% intervals of the named entries of ``statistics(labels, probability)``.

    Every statistic is measured on the same resamples (drawn within class, so each keeps the
    class counts); a statistic undefined on a resample (None) skips it.
    """
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(labels == c) for c in (0, 1) if (labels == c).any()]
    values: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(resamples):
        sample = np.concatenate([rng.choice(members, len(members)) for members in classes])
        measured = statistics(labels[sample], probability[sample])
        for name in names:
            if measured.get(name) is not None:
                values[name].append(measured[name])
    return {name: _percentile_interval(found) for name, found in values.items()}


def _percentile_interval(values: list[float]) -> list[float] | None:
    if not values:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]
