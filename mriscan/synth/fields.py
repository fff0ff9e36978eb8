"""Smooth random fields: the one source of spatially correlated randomness in the generator.

Bias fields, tissue texture, lesion outlines and skull thickness all need noise that varies
smoothly over a chosen distance. Upsampling a coarse grid of normal deviates is far cheaper than
filtering a full-size noise image, and it keeps the cost independent of the smoothing scale.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Draw a zero-mean, unit-variance random field that varies over about ``scale`` pixels.

    Parameters
    ----------
    rng : the generator every deviate is drawn from.
    shape : ``(rows, columns)`` of the field.
    scale : correlation length in pixels (at least 1).

    Returns
    -------
    float32 array of ``shape``.

    Examples
    --------
    >>> field = smooth_field(np.random.default_rng(0), (64, 48), scale=16)
    >>> field.shape, bool(0.7 < field.std() < 1.3)
    ((64, 48), True)
    """
    rows, columns = shape
    scale = max(float(scale), 1.0)
    # Smooth on a grid with a few points per correlation length, then interpolate up: the cost
    # does not grow with the scale, unlike blurring a full-size noise image.
    points = 4.0 if scale >= 3 else 1.0
    grid = (max(2, math.ceil(rows * points / scale) + 1), max(2, math.ceil(columns * points / scale) + 1))
    coarse = rng.standard_normal(grid, dtype=np.float32)
    if points > 1:
        coarse = cv2.GaussianBlur(coarse, (0, 0), points / 3.0, borderType=cv2.BORDER_REFLECT)
    # Normalising the small grid is far cheaper than the full field, and interpolation keeps
    # its mean and nearly keeps its spread.
    coarse = (coarse - coarse.mean()) / max(float(coarse.std()), 1e-6)
    return cv2.resize(coarse, (columns, rows), interpolation=cv2.INTER_CUBIC)


def smoothstep_band(distance: np.ndarray, inner: np.ndarray | float, outer: np.ndarray | float,
                    softness: float = 0.7) -> np.ndarray:
    """Return the soft membership of ``inner <= distance < outer`` (a layer between two radii).

    Parameters
    ----------
    distance : distance of every pixel from a reference outline.
    inner, outer : the layer's bounds (scalars or arrays shaped like ``distance``).
    softness : width of the soft edge, in the units of ``distance``.

    Returns
    -------
    float32 array in [0, 1].

    Examples
    --------
    >>> smoothstep_band(np.array([0.0, 2.0, 5.0]), 1.0, 3.0, softness=0.1).round(2).tolist()
    [0.0, 1.0, 0.0]
    """
    rise = np.clip((distance - inner) / softness + 0.5, 0.0, 1.0)
    fall = np.clip((distance - outer) / softness + 0.5, 0.0, 1.0)
    return (rise - fall).astype(np.float32)
