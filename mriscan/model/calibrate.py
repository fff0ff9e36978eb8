"""Choosing the decision and review thresholds on validation, and temperature scaling.

Sensitivity comes first: ``threshold`` is the largest value that keeps validation recall at or
above the target on the counted (real) tumours, and ``review_threshold`` (<= threshold) is the
largest value below which at most 0.5% of all validation tumours fall, synthetic lesions included,
so that tumours are either predicted or flagged: tumours of a kind the real training sources lack
score lower, and small, faint synthetic lesions stand in for them in the safety net.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REVIEW_RECALL = 0.995
MIN_SPECIFICITY_WARNING = 0.2


@dataclass(frozen=True)
class Thresholds:
    """The operating points chosen on validation, with what they cost there."""

    threshold: float
    review_threshold: float
    validation_sensitivity: float
    validation_specificity: float
    warning: str = ""


def threshold_for_recall(labels: np.ndarray, probability: np.ndarray, target_recall: float) -> float:
    """The largest threshold t with recall(probability >= t) >= target_recall.

    Examples
    --------
    >>> threshold_for_recall(np.array([1, 1, 1, 1, 0]), np.array([.9, .8, .7, .2, .1]), 0.75)
    0.7
    """
    positives = np.sort(probability[labels == 1])[::-1]
    if len(positives) == 0:
        raise ValueError("threshold_for_recall needs at least one positive; received none")
    needed = int(np.ceil(target_recall * len(positives) - 1e-9))
    return float(positives[max(needed, 1) - 1])


def choose_thresholds(
    labels: np.ndarray,
    probability: np.ndarray,
    target_recall: float = 0.98,
    review_recall: float = REVIEW_RECALL,
    counted: np.ndarray | None = None,
) -> Thresholds:
    """Pick ``threshold`` for the target recall and ``review_threshold`` for the safety net.

    ``counted`` (boolean, one per image) limits the tumours whose recall sets ``threshold``, e.g. to
    real tumours when synthetic lesions are in validation too; every tumour counts for the review
    threshold, and every non-tumour image for the specificity. A threshold so low that it calls
    almost everything a tumour is kept, since sensitivity comes first, but reported with a warning.
    """
    labels = np.asarray(labels).astype(int)
    probability = np.asarray(probability, dtype=np.float64)
    # Tumours left out of the count get label -1: neither positive nor negative.
    labels_counted = labels if counted is None else np.where(np.asarray(counted, bool) | (labels == 0), labels, -1)
    threshold = threshold_for_recall(labels_counted, probability, target_recall)
    review = min(threshold, threshold_for_recall(labels, probability, review_recall))
    predicted = probability >= threshold
    sensitivity = float(predicted[labels_counted == 1].mean())
    specificity = float((~predicted[labels == 0]).mean()) if (labels == 0).any() else float("nan")
    warning = ""
    if specificity < MIN_SPECIFICITY_WARNING:
        warning = (
            f"degenerate threshold {threshold:.4g}: validation specificity only {specificity:.2f} "
            f"at recall >= {target_recall}; the model barely separates the classes"
        )
    return Thresholds(threshold, review, sensitivity, specificity, warning)


def fit_temperature(labels: np.ndarray, probability: np.ndarray) -> float:
    """Temperature minimising validation log-loss of sigmoid(logit(p) / T) (grid + refinement).

    Examples
    --------
    >>> y = np.array([0, 0, 1, 1, 0, 1]); p = np.array([.1, .3, .7, .9, .6, .4])
    >>> 0.1 < fit_temperature(y, p) < 10
    True
    """
    clipped = np.clip(np.asarray(probability, np.float64), 1e-7, 1 - 1e-7)
    logits = np.log(clipped / (1 - clipped))
    y = np.asarray(labels, np.float64)

    def loss(temperature: float) -> float:
        z = logits / temperature
        return float(np.mean(np.logaddexp(0, z) - y * z))

    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 200))
    best = grid[int(np.argmin([loss(t) for t in grid]))]
    fine = np.linspace(best * 0.95, best * 1.05, 41)
    return round(float(fine[int(np.argmin([loss(t) for t in fine]))]), 4)


def expected_calibration_error(labels: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins.

    Examples
    --------
    >>> expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0]))
    0.0
    """
    total = max(len(labels), 1)
    error = sum(b["count"] / total * abs(b["mean_probability"] - b["tumour_rate"])
                for b in reliability_bins(labels, probability, bins) if b["count"])
    return round(float(error), 6)


def reliability_bins(labels: np.ndarray, probability: np.ndarray, bins: int = 10) -> list[dict]:
    """Per equal-width probability bin: its edges, image count, mean P(tumour) and observed tumour rate.

    The points of a reliability diagram; empty bins have count 0 and None for the two rates.

    Examples
    --------
    >>> b = reliability_bins(np.array([0, 1, 1]), np.array([0.05, 0.95, 0.85]), bins=2)
    >>> [(x["count"], x["mean_probability"], x["tumour_rate"]) for x in b]
    [(1, 0.05, 0.0), (2, 0.9, 1.0)]
    """
    labels = np.asarray(labels, np.float64)
    probability = np.asarray(probability, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    result = []
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        result.append({
            "lower": round(float(edges[b]), 4), "upper": round(float(edges[b + 1]), 4), "count": count,
            "mean_probability": round(float(probability[members].mean()), 6) if count else None,
            "tumour_rate": round(float(labels[members].mean()), 6) if count else None,
        })
    return result
