"""DeLong (fast algorithm) against its O(mn) definition and a bootstrap; McNemar against known values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mriscan.evaluation.paired_tests import delong_test, mcnemar_test, midranks


def _delong_by_definition(labels, scores_a, scores_b):
    """DeLong et al. (1988) directly: placements from all m x n pairs (psi = 1, 1/2 on ties, 0)."""
    placements = []
    for scores in (scores_a, scores_b):
        x, y = scores[labels == 1], scores[labels == 0]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        placements.append((psi.mean(axis=1), psi.mean(axis=0), psi.mean()))
    (v10_a, v01_a, auc_a), (v10_b, v01_b, auc_b) = placements
    m, n = len(v10_a), len(v01_a)
    s10, s01 = np.cov(np.stack([v10_a, v10_b])), np.cov(np.stack([v01_a, v01_b]))
    covariance = s10 / m + s01 / n
    return auc_a, auc_b, np.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])


def _auroc(labels, scores):
    """The Mann-Whitney AUROC (fast enough for a bootstrap; checked against sklearn below)."""
    m, n = int(labels.sum()), int(len(labels) - labels.sum())
    return (midranks(scores)[labels == 1].sum() - m * (m + 1) / 2) / (m * n)


def test_midranks_share_ties():
    assert midranks(np.array([2, 2, 2, 1, 5])).tolist() == [3.0, 3.0, 3.0, 1.0, 5.0]


def test_fast_delong_equals_the_definition_with_ties():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 150)
    scores_a = rng.integers(0, 12, 150) + 3 * labels  # coarse scores: many ties
    scores_b = scores_a + rng.integers(-4, 5, 150)
    auc_a, auc_b, standard_error = _delong_by_definition(labels, scores_a, scores_b)
    result = delong_test(labels, scores_a, scores_b)
    assert result.auroc_a == pytest.approx(auc_a, abs=1e-12) == pytest.approx(roc_auc_score(labels, scores_a))
    assert _auroc(labels, scores_a) == pytest.approx(auc_a, abs=1e-12)
    assert result.auroc_b == pytest.approx(auc_b, abs=1e-12)
    assert result.standard_error == pytest.approx(standard_error, rel=1e-9)
    assert result.difference_ci95[0] < result.difference < result.difference_ci95[1]


def test_delong_standard_error_agrees_with_a_paired_bootstrap():
    rng = np.random.default_rng(7)
    labels = np.array([1] * 120 + [0] * 120)
    scores_a = labels * 1.0 + rng.normal(0, 1.0, 240)
    scores_b = scores_a * 0.6 + rng.normal(0, 0.8, 240) + labels * 0.3
    result = delong_test(labels, scores_a, scores_b)
    differences = []
    for _ in range(600):
        sample = np.concatenate([rng.choice(np.flatnonzero(labels == c), 120) for c in (0, 1)])
        y = labels[sample]
        differences.append(_auroc(y, scores_b[sample]) - _auroc(y, scores_a[sample]))
    assert result.standard_error == pytest.approx(np.std(differences, ddof=1), rel=0.15)


def test_delong_one_sided_p_flags_a_clearly_worse_b():
    rng = np.random.default_rng(1)
    labels = np.array([1] * 40 + [0] * 40)
    good = labels + rng.normal(0, 0.3, 80)
    useless = rng.normal(0, 1, 80)
    worse = delong_test(labels, good, useless)
    assert worse.p_b_lower < 1e-4 and worse.p_two_sided < 1e-4
    assert delong_test(labels, useless, good).p_b_lower > 0.999
    same = delong_test(labels, good, good)
    assert same.difference == 0 and same.p_two_sided == 1.0 and same.p_b_lower == 0.5


def test_delong_needs_two_of_each_class():
    with pytest.raises(ValueError, match="at least two images of each class"):
        delong_test(np.array([1, 0, 0]), np.array([.9, .1, .2]), np.array([.8, .2, .1]))


def test_mcnemar_exact_for_few_discordant_images():
    a = np.array([True] * 10 + [False] * 2)
    b = np.array([False] * 9 + [True] * 3)
    result = mcnemar_test(a, b)
    assert (result.only_a_correct, result.only_b_correct, result.method) == (9, 2, "exact binomial")
    assert result.p_two_sided == pytest.approx(2 * 67 / 2048)  # 2 * P(X >= 9), X ~ Bin(11, 1/2)
    assert result.p_b_worse == pytest.approx(67 / 2048)
    assert mcnemar_test(b, a).p_b_worse == pytest.approx(1 - 12 / 2048)  # P(X >= 2)
    assert mcnemar_test(a, a).p_two_sided == 1.0


def test_mcnemar_chi_square_for_many_discordant_images():
    a = np.array([True] * 30 + [False] * 10 + [True] * 50)
    b = np.array([False] * 30 + [True] * 10 + [True] * 50)
    result = mcnemar_test(a, b)
    # chi2 = (|30 - 10| - 1)^2 / 40 = 9.025 on 1 degree of freedom: p = 0.0026631 (statsmodels' value)
    assert result.method.startswith("chi-square") and result.p_two_sided == pytest.approx(0.0026631, rel=1e-4)
    assert result.p_b_worse == pytest.approx(result.p_two_sided / 2, rel=1e-9)
