"""Tests of mriscan.data.split on label and group layouts made here."""

from __future__ import annotations

import numpy as np
import pytest

from mriscan.data.split import Split, join_groups, minimum_images_per_class, split_by_group
from mriscan.errors import TrainingError


def _grouped_set(seed: int, n_groups: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Labels and group ids like a deduplicated collection: mostly singletons, some copy groups."""
    rng = np.random.default_rng(seed)
    sizes = np.where(rng.random(n_groups) < 0.8, 1, rng.integers(2, 9, n_groups))
    group_labels = (rng.random(n_groups) < 0.4).astype(int)
    group_ids = np.repeat(rng.permutation(n_groups) * 7, sizes)  # ids need not be 0..n-1
    return np.repeat(group_labels, sizes), group_ids


def _parts(split: Split) -> list[np.ndarray]:
    return [split.train, split.validation, split.test]


def test_every_image_in_exactly_one_split_and_no_group_spans_two() -> None:
    labels, group_ids = _grouped_set(0)
    split = split_by_group(labels, group_ids)
    np.testing.assert_array_equal(np.sort(np.concatenate(_parts(split))), np.arange(len(labels)))
    groups_per_part = [set(group_ids[part]) for part in _parts(split)]
    for first in range(3):
        for second in range(first + 1, 3):
            assert not groups_per_part[first] & groups_per_part[second]


@pytest.mark.parametrize("fractions", [(0.80, 0.15, 0.05), (0.6, 0.2, 0.2)])
def test_sizes_and_class_proportions_follow_the_fractions(fractions: tuple[float, float, float]) -> None:
    labels, group_ids = _grouped_set(1)
    split = split_by_group(labels, group_ids, fractions=fractions)
    largest_group = np.bincount(np.unique(group_ids, return_inverse=True)[1]).max()
    for part, fraction in zip(_parts(split), fractions, strict=True):
        assert abs(len(part) - fraction * len(labels)) <= largest_group
        assert abs(labels[part].mean() - labels.mean()) <= 0.05
        assert set(labels[part]) == {0, 1}


def test_same_seed_same_split_other_seed_other_split() -> None:
    labels, group_ids = _grouped_set(2)
    first, again = split_by_group(labels, group_ids, seed=11), split_by_group(labels, group_ids, seed=11)
    other = split_by_group(labels, group_ids, seed=12)
    for a, b in zip(_parts(first), _parts(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.test, other.test)


def test_string_labels_and_large_groups() -> None:
    labels = np.array(["no"] * 60 + ["yes"] * 60)
    group_ids = np.concatenate([np.arange(60) // 6, 100 + np.arange(60) // 3])
    split = split_by_group(labels, group_ids, fractions=(0.6, 0.2, 0.2))
    for part in _parts(split):
        assert set(labels[part]) == {"no", "yes"}


def test_too_few_images_says_how_many_and_how_many_are_needed() -> None:
    labels = np.array([0] * 50 + [1] * 12)
    with pytest.raises(TrainingError, match=r"found 0: 50, 1: 12 .*at least 20 per class"):
        split_by_group(labels, np.arange(len(labels)))
    assert minimum_images_per_class((0.5, 0.25, 0.25)) == 4


def test_one_class_only_is_refused() -> None:
    with pytest.raises(TrainingError, match="Only one class"):
        split_by_group(np.ones(100, int), np.arange(100))


def test_class_locked_in_few_groups_is_refused_with_a_reason() -> None:
    labels = np.array([0] * 100 + [1] * 30)
    group_ids = np.concatenate([np.arange(100), [1000] * 15 + [1001] * 15])
    with pytest.raises(TrainingError, match="duplicate groups"):
        split_by_group(labels, group_ids)


@pytest.mark.parametrize(
    "fractions",
    [(0.8, 0.15, 0.1), (0.9, 0.1, 0.0), (1.2, -0.1, -0.1), (0.8, 0.2), (0.5, 0.3, float("nan")), ("a", "b", "c")],
)
def test_invalid_fractions_are_refused(fractions) -> None:
    labels, group_ids = _grouped_set(3)
    with pytest.raises(TrainingError, match=r"Expected three split fractions .* Received: fractions="):
        split_by_group(labels, group_ids, fractions=fractions)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        split_by_group(np.zeros(10), np.zeros(9))


def test_join_groups_puts_images_sharing_a_key_in_one_group_and_merges_the_groups_they_link():
    # Images 1-2 are one volume's slices; image 2 is also a near copy of image 3 (group 2): all three join.
    group_ids = np.array([0, 1, 2, 2, 3])
    joined = join_groups(group_ids, ["a.png", "v.nii", "v.nii", "c.png", "d.png"])
    assert joined.tolist() == [0, 1, 1, 1, 2]
    assert join_groups(np.array([5, 7]), ["x", "y"]).tolist() == [0, 1]
