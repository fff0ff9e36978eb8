import numpy as np

from mriscan.evaluation.metrics import classification_metrics, safety_net_metrics


def test_metrics_at_threshold():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probability = np.array([0.1, 0.2, 0.7, 0.4, 0.8, 0.9])
    m = classification_metrics(labels, probability, 0.5)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["sensitivity"] == round(2 / 3, 4) and m["specificity"] == round(2 / 3, 4)
    assert m["auroc"] == round(8 / 9, 4)


def test_auroc_is_none_for_one_class():
    assert classification_metrics(np.ones(4), np.ones(4) * 0.7, 0.5)["auroc"] is None


def test_safety_net():
    labels = np.array([1, 1, 1, 1, 0, 0])
    probability = np.array([0.9, 0.45, 0.2, 0.6, 0.45, 0.1])
    s = safety_net_metrics(labels, probability, threshold=0.5, review_threshold=0.4)
    assert s["tumors_predicted_or_flagged"] == 0.75
    assert s["flagged_share"] == round(2 / 6, 4)
