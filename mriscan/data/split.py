"""Group-aware stratified splits into training, validation and test sets.

Copies of one image must land in one split, or the test set scores what the model memorised
(on Br35H, a plain random split inflated test AUROC markedly; docs/research.md). So whole
duplicate groups are assigned, one at a
time, to the split furthest below its per-class target, which keeps class proportions close to
the whole set's in every split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mriscan.errors import TrainingError

SPLIT_NAMES = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.80, 0.15, 0.05)
DEFAULT_SEED = 2021


@dataclass(frozen=True, eq=False)
class Split:
    """Indices (ascending) of the images in each split; no duplicate group spans two splits."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_by_group(
    labels: np.ndarray,
    group_ids: np.ndarray,
    *,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = DEFAULT_SEED,
) -> Split:
    """Split images into train, validation and test sets, keeping each duplicate group together.

    Groups are shuffled with ``seed``, ordered largest first (so big groups are placed while
    every split still has room), and each goes to the split whose classes are furthest below
    their targets ``fraction * images of that class``, weighted by the group's own classes.

    Parameters
    ----------
    labels : class label of each image (any comparable values; usually 0 and 1).
    group_ids : duplicate group of each image (e.g. ``DuplicateGroups.group_ids``).
    fractions : share of the images for train, validation and test; each > 0, summing to 1.
    seed : seed of the group shuffle; the same seed gives the same split.

    Returns
    -------
    Split

    Raises
    ------
    TrainingError
        If the fractions are invalid, a class has too few images for every split to get one,
        or the duplicate groups make it impossible to give every split every class.

    Examples
    --------
    >>> labels = np.repeat([0, 1], 100)
    >>> split = split_by_group(labels, group_ids=np.arange(200))
    >>> len(split.train), len(split.validation), len(split.test)
    (160, 30, 10)
    >>> float(labels[split.test].mean())
    0.5
    """
    checked = _check_fractions(fractions)
    labels, group_ids = np.asarray(labels), np.asarray(group_ids)
    if labels.ndim != 1 or labels.shape != group_ids.shape:
        raise ValueError(
            f"Expected labels and group_ids of the same length. Received: {labels.shape} and {group_ids.shape}"
        )
    class_names, classes = np.unique(labels, return_inverse=True)
    _check_enough_images(class_names, np.bincount(classes, minlength=len(class_names)), checked)
    _, groups = np.unique(group_ids, return_inverse=True)
    group_counts = np.zeros((groups.max() + 1, len(class_names)), dtype=np.int64)
    np.add.at(group_counts, (groups, classes), 1)
    assignment = _assign_groups(group_counts, checked, np.random.default_rng(seed))
    split_of_image = assignment[groups]
    _check_every_split_has_every_class(class_names, classes, split_of_image, checked)
    train, validation, test = (np.flatnonzero(split_of_image == s) for s in range(len(SPLIT_NAMES)))
    return Split(train=train, validation=validation, test=test)


def join_groups(group_ids: np.ndarray, keys: Sequence[str]) -> np.ndarray:
    """Group ids in which images that share a key (the slices of one volume: its path) share a group too.

    Groups joined through a key merge whole, so a duplicate group that links two volumes puts both in
    one split. The ids are the smallest of each joined set, renumbered from 0.

    Examples
    --------
    >>> join_groups(np.array([0, 1, 2, 2, 3]), ["a", "v", "v", "c", "d"]).tolist()
    [0, 1, 1, 1, 2]
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(group_ids) == 0:
        return np.zeros(0, dtype=np.intp)
    _, groups = np.unique(np.asarray(group_ids), return_inverse=True)
    _, key_ids = np.unique(np.asarray(keys, dtype=str), return_inverse=True)
    first_key = groups.max() + 1
    nodes = first_key + key_ids.max() + 1
    edges = coo_matrix((np.ones(len(groups)), (groups, first_key + key_ids)), shape=(nodes, nodes))
    _, component = connected_components(edges, directed=False)
    _, joined = np.unique(component[groups], return_inverse=True)
    return joined


def minimum_images_per_class(fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> int:
    """Fewest images of a class for its expected share in the smallest split to reach one image.

    Examples
    --------
    >>> minimum_images_per_class((0.80, 0.15, 0.05))
    20
    """
    return max(len(SPLIT_NAMES), math.ceil(1.0 / min(_check_fractions(fractions)) - 1e-9))


def _check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    expected = (
        "Expected three split fractions (train, validation, test), each greater than 0, summing to 1 "
        "(for example (0.80, 0.15, 0.05))."
    )
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise TrainingError(f"{expected} Received: fractions={fractions!r}") from None
    valid = len(values) == len(SPLIT_NAMES) and all(math.isfinite(f) and f > 0 for f in values)
    if not valid or abs(sum(values) - 1.0) > 1e-6:
        raise TrainingError(f"{expected} Received: fractions={fractions!r}")
    return values  # type: ignore[return-value]


def _check_enough_images(class_names: np.ndarray, counts: np.ndarray, fractions: tuple[float, ...]) -> None:
    needed = minimum_images_per_class(fractions)  # type: ignore[arg-type]
    found = ", ".join(f"{name!s}: {int(count)}" for name, count in zip(class_names, counts, strict=True))
    if len(class_names) < 2:
        raise TrainingError(
            f"Only one class was found ({found} images); training needs images of both classes, "
            f"at least {needed} per class. Add the missing class folder."
        )
    if counts.min() < needed:
        raise TrainingError(
            f"Too few images to split: found {found} (after removing duplicates); at least {needed} per "
            f"class are needed so that every split (fractions={fractions}) gets each class. Add images."
        )


def _assign_groups(group_counts: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """Assign each group (row of per-class counts) to a split; return the split of each group."""
    targets = np.outer(fractions, group_counts.sum(axis=0)).astype(np.float64)
    filled = np.zeros_like(targets)
    shuffled = rng.permutation(len(group_counts))
    order = shuffled[np.argsort(-group_counts[shuffled].sum(axis=1), kind="stable")]
    assignment = np.empty(len(group_counts), dtype=np.intp)
    for group in order:
        counts = group_counts[group]
        # Images still missing from each split's targets, counted for this group's classes; on a tie,
        # the split missing the larger share of its target (rounding then favours small splits).
        missing = targets - filled
        shortfall = np.round(missing @ counts, 9)
        chosen = int(np.lexsort(((missing / targets) @ counts, shortfall))[-1])
        assignment[group] = chosen
        filled[chosen] += counts
    return assignment


def _check_every_split_has_every_class(
    class_names: np.ndarray, classes: np.ndarray, split_of_image: np.ndarray, fractions: tuple[float, ...]
) -> None:
    for split, name in enumerate(SPLIT_NAMES):
        present = np.unique(classes[split_of_image == split])
        missing = [str(class_names[c]) for c in range(len(class_names)) if c not in present]
        if missing:
            raise TrainingError(
                f"The {name} split (fractions={fractions}) has no image of class {', '.join(missing)}: "
                "that class's images sit in too few duplicate groups to spread over three splits. "
                "Add more distinct images of that class or give the split a larger fraction."
            )
