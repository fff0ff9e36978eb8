"""Classification metrics at a threshold, in the shape the model card and reports use."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def classification_metrics(labels: np.ndarray, probability: np.ndarray, threshold: float) -> dict:
    """Accuracy, sensitivity, specificity, AUROC and the confusion matrix at ``threshold``.

    The confusion matrix is ``[[tn, fp], [fn, tp]]`` (rows: truth no_tumor, tumor).

    Examples
    --------
    >>> m = classification_metrics(np.array([0, 0, 1, 1]), np.array([.1, .6, .4, .9]), 0.5)
    >>> m["accuracy"], m["sensitivity"], m["confusion_matrix"]
    (0.5, 0.5, [[1, 1], [1, 1]])
    """
    labels = np.asarray(labels).astype(int)
    probability = np.asarray(probability, np.float64)
    predicted = (probability >= threshold).astype(int)
    tn = int(((predicted == 0) & (labels == 0)).sum())
    fp = int(((predicted == 1) & (labels == 0)).sum())
    fn = int(((predicted == 0) & (labels == 1)).sum())
    tp = int(((predicted == 1) & (labels == 1)).sum())
    both_classes = 0 < labels.sum() < len(labels)
    return {
        "n": int(len(labels)),
        "accuracy": _ratio(tp + tn, len(labels)),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "auroc": round(float(roc_auc_score(labels, probability)), 4) if both_classes else None,
        "threshold": float(threshold),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def safety_net_metrics(
    labels: np.ndarray, probability: np.ndarray, threshold: float, review_threshold: float
) -> dict:
    """Share of tumours predicted or flagged, and share of all images flagged near the threshold."""
    labels = np.asarray(labels).astype(int)
    probability = np.asarray(probability, np.float64)
    flagged = (probability < threshold) & (probability >= review_threshold)
    caught = (probability >= review_threshold)[labels == 1]
    return {
        "tumors_predicted_or_flagged": _ratio(int(caught.sum()), len(caught)),
        "flagged_share": _ratio(int(flagged.sum()), len(labels)),
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None
