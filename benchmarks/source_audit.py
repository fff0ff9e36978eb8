"""Source audit: how well do simple image statistics predict the source, and the label, before and
after preprocessing?

Most sources hold one class only, so whatever tells sources apart (size, background, intensity
histogram, a skull) can stand in for the label. A gradient-boosted classifier on a handful of
statistics, cross-validated, shows how much of that survives preprocessing:

* source: balanced accuracy of predicting the data folder (chance is 1 / number of folders);
* label, pooled: AUROC of predicting tumour from the statistics over all folders together
  (what a shortcut could reach without looking at any lesion);
* label within a source: AUROC inside each folder that holds both classes.

    python benchmarks/heldout.py audit --work WORK        (after ``heldout.py stage``)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mriscan.data.augment import strip_to_brain
from mriscan.data.dataset import find_labelled_files
from mriscan.data.preprocess import PreprocessConfig, preprocess

PER_CLASS = 300
"""Images sampled per (source, class): enough for stable cross-validated figures, quick to load."""


def statistics(grey: np.ndarray) -> list[float]:
    """Size, intensity histogram, background and a skull-rim measure of one grey image."""
    unit = grey.astype(np.float32) / max(float(grey.max()), 1e-6)
    head = unit > 0.1
    rim = head & ~cv2.erode(head.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    inner = cv2.erode(head.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    rim_mean = float(unit[rim].mean()) if rim.any() else 0.0
    inner_mean = float(unit[inner].mean()) if inner.any() else 0.0
    height, width = grey.shape
    return [height, width, width / height, float(unit.mean()), float(unit.std()),
            *np.percentile(unit, (5, 25, 50, 75, 95)).tolist(), float((unit < 0.05).mean()),
            float(head.mean()), rim_mean, rim_mean / max(inner_mean, 1e-6)]


def sample(root: Path, sources: tuple[str, ...], seed: int = 0) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Up to PER_CLASS files of each (source, class) under ``root``, with labels and sources."""
    rng = np.random.default_rng(seed)
    files = find_labelled_files([root / s for s in sources if (root / s).exists()])
    chosen: list = []
    for key in sorted({(f.source, f.label) for f in files}):
        group = [f for f in files if (f.source, f.label) == key]
        chosen += [group[i] for i in sorted(rng.choice(len(group), min(PER_CLASS, len(group)), replace=False))]
    return ([f.path for f in chosen], np.array([f.label for f in chosen]), np.array([f.source for f in chosen]))


def features(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Statistics of each decoded image, of its model input, and of the model input skull-stripped
    as ``fit --strip-augment`` shows it."""
    config = PreprocessConfig()
    raw, model, stripped = [], [], []
    for path in paths:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)  # by content, as mriscan decodes
        model_input = preprocess(grey, config)
        raw.append(statistics(grey))
        model.append(statistics((model_input[..., 0] * 255).astype(np.uint8)))
        brain = strip_to_brain(model_input[np.newaxis], seed=len(stripped))[0, ..., 0]
        stripped.append(statistics((brain * 255).astype(np.uint8)))
    return np.array(raw), np.array(model), np.array(stripped)


def scores(x: np.ndarray, labels: np.ndarray, sources: np.ndarray) -> dict[str, float]:
    """Cross-validated source accuracy and label AUROCs (pooled and within each two-class source)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import cross_val_predict

    model = HistGradientBoostingClassifier(max_iter=200, random_state=0)
    found = {"source (balanced accuracy)": balanced_accuracy_score(sources, cross_val_predict(model, x, sources, cv=5))}
    pooled = cross_val_predict(model, x, labels, cv=5, method="predict_proba")[:, 1]
    found["label, pooled (AUROC)"] = roc_auc_score(labels, pooled)
    for source in sorted(set(sources)):
        inside = sources == source
        if len(set(labels[inside])) == 2:
            p = cross_val_predict(model, x[inside], labels[inside], cv=5, method="predict_proba")[:, 1]
            found[f"label within {source} (AUROC)"] = roc_auc_score(labels[inside], p)
    return found


def audit(root: Path, sources: tuple[str, ...]) -> None:
    """Print the audit table for the staged ``sources`` under ``root``."""
    paths, labels, names = sample(root, sources)
    columns = [scores(x, labels, names) for x in features(paths)]
    chance = 1 / len(set(names))
    print(f"Source audit: {len(paths)} images, {len(set(names))} sources (source chance {chance:.2f})")
    print("| what the image statistics predict | decoded image | model input | model input, skull-stripped |")
    print("|---|---|---|---|")
    for key in columns[0]:
        print(f"| {key} | " + " | ".join(f"{c[key]:.3f}" for c in columns) + " |")
