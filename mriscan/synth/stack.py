"""One lesion drawn through a stack of healthy slices: an ellipsoid, cut by every slice it crosses.

A study-level stand-in for a tumour volume: the lesion keeps its place, kind, outline and
intensities from slice to slice, and its section shrinks away from its centre slice as an
ellipsoid's does (half as deep across slices as it is wide, up to as deep). Each section is drawn by
:func:`~mriscan.synth.lesion.draw_lesion_at` into the slice's own estimated brain, so a section
whose centre falls outside that slice's brain is cut to it or left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from mriscan.synth.healthy import estimate_brain_mask
from mriscan.synth.lesion import MASS_LABEL, MIN_BRAIN_PIXELS, draw_lesion_at, place_lesion

CENTRE_BRAIN_SHARE = 0.7
"""The centre slice is one whose brain is at least this share of the stack's largest."""
MIN_SECTION_RADIUS = 2.0
"""Sections thinner than this (pixels) are left out: too small to see."""


@dataclass(frozen=True)
class StackLesion:
    """A stack with one lesion drawn through it, and where the lesion is.

    Attributes
    ----------
    stack : float32 (slices, rows, columns), the lesion drawn in.
    labels : uint8 of the same shape: mass and oedema labels of :mod:`mriscan.synth.lesion`.
    kind : the lesion kind; centre_slice : the slice through its centre.
    radius_mm, depth_mm : the ellipsoid's in-plane and across-slice semi-axes.
    """

    stack: np.ndarray
    labels: np.ndarray
    kind: str
    centre_slice: int
    radius_mm: float
    depth_mm: float

    @property
    def lesion_slices(self) -> list[int]:
        """The slices where some of the mass was drawn."""
        return [int(k) for k in np.flatnonzero((self.labels == MASS_LABEL).any(axis=(1, 2)))]


def brain_masks(stack: np.ndarray) -> np.ndarray:
    """Estimated brain of every slice (uint8, 1 inside), from the stack windowed to 8 bits as a whole."""
    low, high = np.percentile(stack, (0.5, 99.5))
    grey = np.clip((stack - low) / max(float(high - low), 1e-6) * 255, 0, 255).astype(np.uint8)
    return np.stack([estimate_brain_mask(image) for image in grey])


def draw_lesion_through(stack: np.ndarray, rng: np.random.Generator, contrast: str, pixel_mm: float,
                        positions_mm: Sequence[float]) -> StackLesion:
    """Draw one ellipsoidal lesion through ``stack`` (slices, rows, columns), slice by slice.

    ``pixel_mm`` is the in-plane pixel size, ``positions_mm`` the position of each slice along the
    stack (``3.0 * np.arange(n)`` for slices 3 mm apart; gaps allowed).

    Examples
    --------
    >>> stack = np.zeros((9, 96, 96), np.float32)
    >>> stack[:, 16:80, 16:80] = 100 + np.random.default_rng(1).normal(0, 5, (9, 64, 64))
    >>> lesion = draw_lesion_through(stack, np.random.default_rng(0), "t2", 1.0, 3.0 * np.arange(9))
    >>> lesion.stack.shape, lesion.centre_slice in lesion.lesion_slices
    ((9, 96, 96), True)
    """
    masks = brain_masks(stack)
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    centre_slice = int(rng.choice(np.flatnonzero(areas >= CENTRE_BRAIN_SHARE * areas.max())))
    placement = place_lesion(masks[centre_slice], rng)
    radius_mm = placement.radius * pixel_mm
    depth_mm = radius_mm * rng.uniform(0.5, 1.0)
    section_seed = int(rng.integers(2**32))
    out = np.asarray(stack, dtype=np.float32).copy()
    labels = np.zeros(out.shape, np.uint8)
    for index in range(len(out)):
        across = ((positions_mm[index] - positions_mm[centre_slice]) / depth_mm) ** 2
        radius = placement.radius * np.sqrt(max(1.0 - across, 0.0))
        if radius < MIN_SECTION_RADIUS or areas[index] < MIN_BRAIN_PIXELS:
            continue
        section = draw_lesion_at(out[index], masks[index], replace(placement, radius=float(radius)),
                                 np.random.default_rng(section_seed), contrast)
        out[index], labels[index] = section.image, section.labels
    return StackLesion(out, labels, placement.kind, centre_slice, radius_mm, depth_mm)
