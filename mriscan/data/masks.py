"""Small operations on binary masks, shared by the brain estimates of augmentation and synthesis."""

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
