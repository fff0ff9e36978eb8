"""Paired tests of two models scored on the same images.

* DeLong's test of the difference between two correlated AUROCs (DeLong, DeLong & Clarke-Pearson,
  Biometrics 44, 1988), computed with Sun & Xu's fast algorithm (IEEE Signal Processing Letters
  21(11), 2014): mid-ranks replace the m x n pairwise comparisons, so it costs O(N log N).
* McNemar's test of two paired proportions (each image right or wrong at each model's own
  threshold): exact binomial when the discordant images are few, else the continuity-corrected
  normal (chi-square) approximation.

Convention: the difference is always B minus A, and the one-sided p-values ask whether B is worse.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

EXACT_MCNEMAR_BELOW = 25
_Z_95 = 1.959963984540054


@dataclass(frozen=True)
class DelongResult:
    """DeLong's test of AUROC(B) - AUROC(A) on the same images."""

    auroc_a: float
    auroc_b: float
    difference: float
    standard_error: float
    z: float
    p_two_sided: float
    p_b_lower: float
    difference_ci95: tuple[float, float]

    def as_record(self) -> dict:
        """The result as JSON-ready values; ``z`` is None when infinite (zero standard error, a difference)."""
        return {**asdict(self), "z": self.z if math.isfinite(self.z) else None,
                "difference_ci95": list(self.difference_ci95)}


@dataclass(frozen=True)
class McnemarResult:
    """McNemar's test on paired right/wrong outcomes of models A and B."""

    only_a_correct: int
    only_b_correct: int
    p_two_sided: float
    p_b_worse: float
    method: str


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` in which tied values share the mean of their ranks (Sun & Xu, Algorithm 1).

    Examples
    --------
    >>> midranks(np.array([0.3, 0.1, 0.3, 0.7])).tolist()
    [2.5, 1.0, 2.5, 4.0]
    """
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(ordered)) + 1])
    ends = np.concatenate([starts[1:], [len(values)]])
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def delong_test(labels: np.ndarray, probability_a: np.ndarray, probability_b: np.ndarray) -> DelongResult:
    """DeLong's paired test of the AUROCs of two scores of the same images (fast algorithm).

    Parameters
    ----------
    labels : 1 for tumour, 0 for no tumour; at least two of each.
    probability_a, probability_b : the two models' scores of the same images, in the same order.

    Examples
    --------
    >>> y = np.array([1, 1, 1, 0, 0, 0])
    >>> result = delong_test(y, np.array([.9, .8, .3, .4, .2, .1]), np.array([.9, .8, .7, .4, .2, .1]))
    >>> round(result.auroc_a, 4), result.auroc_b, round(result.difference, 4)
    (0.8889, 1.0, 0.1111)
    """
    labels = np.asarray(labels).astype(int)
    positive = labels == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least two images of each class; received {m} tumour "
                         f"and {n} no-tumour images")
    scores = np.stack([np.asarray(probability_a, np.float64), np.asarray(probability_b, np.float64)])
    positives, negatives = scores[:, positive], scores[:, ~positive]
    rank_within_positives = np.stack([midranks(row) for row in positives])
    rank_within_negatives = np.stack([midranks(row) for row in negatives])
    rank_overall = np.stack([midranks(row) for row in np.concatenate([positives, negatives], axis=1)])
    auroc = rank_overall[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    # Placements: the share of negatives each positive outranks, and of positives outranking each negative.
    positive_placements = (rank_overall[:, :m] - rank_within_positives) / n
    negative_placements = 1.0 - (rank_overall[:, m:] - rank_within_negatives) / m
    covariance = np.cov(positive_placements) / m + np.cov(negative_placements) / n
    variance = max(float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1]), 0.0)
    return _delong_result(float(auroc[0]), float(auroc[1]), math.sqrt(variance))


def _delong_result(auroc_a: float, auroc_b: float, standard_error: float) -> DelongResult:
    difference = auroc_b - auroc_a
    if standard_error > 0:
        z = difference / standard_error
    else:  # identical placements: no difference, or a certain one
        z = 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return DelongResult(
        auroc_a=auroc_a, auroc_b=auroc_b, difference=difference, standard_error=standard_error, z=z,
        p_two_sided=min(1.0, 2.0 * _normal_sf(abs(z))), p_b_lower=_normal_sf(-z),
        difference_ci95=(difference - _Z_95 * standard_error, difference + _Z_95 * standard_error),
    )


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> McnemarResult:
    """McNemar's test of whether A and B are right equally often on the same images.

    Only discordant images count: ``b`` right only for A, ``c`` right only for B. Under the null
    hypothesis b ~ Binomial(b + c, 1/2). ``p_b_worse`` is one-sided (B wrong more often than A).

    Examples
    --------
    >>> a = np.array([True] * 10 + [False] * 2); b = np.array([False] * 9 + [True] * 3)
    >>> result = mcnemar_test(a, b)
    >>> result.only_a_correct, result.only_b_correct, round(result.p_two_sided, 4), result.method
    (9, 2, 0.0654, 'exact binomial')
    """
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((~correct_a & correct_b).sum())
    discordant = only_a + only_b
    if discordant == 0:
        return McnemarResult(only_a, only_b, 1.0, 1.0, "no discordant images")
    if discordant < EXACT_MCNEMAR_BELOW:
        p_two = min(1.0, 2.0 * _binomial_upper_tail(max(only_a, only_b), discordant))
        return McnemarResult(only_a, only_b, p_two, _binomial_upper_tail(only_a, discordant), "exact binomial")
    z = (abs(only_a - only_b) - 1.0) / math.sqrt(discordant)
    p_worse = _normal_sf((only_a - only_b - 1.0) / math.sqrt(discordant))
    return McnemarResult(only_a, only_b, min(1.0, 2.0 * _normal_sf(max(z, 0.0))), p_worse,
                         "chi-square, continuity corrected")


def _binomial_upper_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exactly."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n


def _normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))
