"""Small operations on binary masks and the brain estimate of a model input.

Shared by augmentation (skull-stripped copies), synthesis (where lesions may go) and explanations
(LIME's superpixels and Grad-CAM's map stay in the brain), so each estimates the brain the same way.
"""

from __future__ import annotations

import cv2
import numpy as np


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 8-connected component of a 0/1 uint8 mask (all zeros when there is none).

    Examples
    --------
    >>> mask = np.zeros((5, 7), np.uint8); mask[1:3, 1:3] = 1; mask[1:4, 4:7] = 1
    >>> int(largest_component(mask).sum())
    9
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == largest).astype(np.uint8)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a 0/1 uint8 mask (everything not reachable from the border).

    Examples
    --------
    >>> ring = np.ones((5, 5), np.uint8); ring[2, 2] = 0
    >>> int(fill_holes(ring).sum())
    25
    """
    padded = np.pad(mask, 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    return (padded | (1 - flood))[1:-1, 1:-1]


def brain_mask(unit: np.ndarray, peel: float) -> np.ndarray:
    """Estimate the brain of a [0, 1] model input: the head less a rim of ``peel`` x its radius.

    The head is the largest bright region after a light blur (half the Otsu level), holes filled,
    so dark structures inside it (ventricles, a necrotic core) stay in; peeling a rim of skull and
    scalp (about 0.15 of the head's equivalent radius) leaves the brain. No model is involved.

    Returns
    -------
    float32 mask, 1 inside the brain; all ones when the image has no bright region at all.

    Examples
    --------
    >>> head = np.zeros((64, 64), np.float32); head[8:56, 8:56] = 0.8
    >>> brain = brain_mask(head, 0.15)
    >>> bool(brain[32, 32]), bool(brain[9, 32]), bool(brain[2, 2])
    (True, False, False)
    """
    as_byte = np.clip(unit * 255.0, 0, 255).astype(np.uint8)
    smoothed = cv2.GaussianBlur(as_byte, (5, 5), 0)
    level, _ = cv2.threshold(smoothed, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    foreground = (smoothed > 0.5 * level).astype(np.uint8)
    if not foreground.any():
        return np.ones(unit.shape, np.float32)
    head = fill_holes(largest_component(foreground))
    # The frame's edge counts as outside: a head cropped to its box touches it, and the rim goes there too.
    depth = cv2.distanceTransform(np.pad(head, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    return (depth > peel * np.sqrt(head.sum() / np.pi)).astype(np.float32)
