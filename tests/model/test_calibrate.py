import numpy as np
import pytest

from mriscan.model.calibrate import choose_thresholds, expected_calibration_error, fit_temperature, threshold_for_recall


def test_threshold_keeps_target_recall():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    probability = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 2000), 0, 1)
    t = choose_thresholds(labels, probability, target_recall=0.98)
    assert (probability[labels == 1] >= t.threshold).mean() >= 0.98
    assert (probability[labels == 1] >= t.review_threshold).mean() >= 0.995
    assert t.review_threshold <= t.threshold


def test_only_counted_tumours_set_the_threshold():
    # Real tumours score high; synthetic ones (not counted) are hard and would drag the threshold down.
    labels = np.array([1] * 100 + [1] * 100 + [0] * 100)
    probability = np.concatenate([np.linspace(0.6, 1.0, 100), np.linspace(0.01, 0.5, 100), np.linspace(0, 0.55, 100)])
    counted = np.array([True] * 100 + [False] * 100 + [False] * 100)
    everything = choose_thresholds(labels, probability, 0.98)
    real_only = choose_thresholds(labels, probability, 0.98, counted=counted)
    assert real_only.threshold > 0.55 > everything.threshold
    assert real_only.validation_specificity == 1.0  # every negative counts, counted or not
    assert real_only.validation_sensitivity >= 0.98
    # The safety net counts every tumour: the hard, uncounted ones are flagged, not lost.
    assert (probability[labels == 1] >= real_only.review_threshold).mean() >= 0.995
    assert real_only.review_threshold < everything.threshold


def test_degenerate_threshold_is_reported():
    labels = np.array([1] * 50 + [0] * 50)
    probability = np.concatenate([np.linspace(0.001, 0.9, 50), np.linspace(0.01, 0.9, 50)])
    assert "degenerate" in choose_thresholds(labels, probability, 0.98).warning


def test_threshold_needs_a_positive():
    with pytest.raises(ValueError, match="at least one positive"):
        threshold_for_recall(np.zeros(5), np.ones(5), 0.9)


def test_temperature_softens_overconfident_scores():
    rng = np.random.default_rng(1)
    true_p = rng.uniform(0.02, 0.98, 4000)
    labels = (rng.random(4000) < true_p).astype(int)
    logits = np.log(true_p / (1 - true_p)) * 4  # overconfident
    overconfident = 1 / (1 + np.exp(-logits))
    temperature = fit_temperature(labels, overconfident)
    assert 3.0 < temperature < 5.0
    from mriscan.model.bundle import apply_temperature

    calibrated = apply_temperature(overconfident, temperature)
    assert expected_calibration_error(labels, calibrated) < expected_calibration_error(labels, overconfident)
