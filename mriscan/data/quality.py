"""Image facts that say when the model should not be trusted on an input.

Two kinds of check, both cheap and both computed on the decoded pixels and the model input:

* ``low_quality``: blank or near-constant images, tiny images, extreme aspect ratios;
* ``unusual_input``: colour content, or statistics far outside what the model saw in training
  (the training ranges are stored in the model card by ``fit``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

MIN_SIDE = 64
MAX_ASPECT = 3.0
MIN_RELATIVE_STD = 0.02
INPUT_STATISTICS = ("content_fraction", "input_mean", "input_std", "aspect_ratio")
# How far outside the training range (in units of that range's width) counts as unusual.
RANGE_TOLERANCE = 0.25
MIN_SLACK = 0.02


def input_statistics(pixels: np.ndarray, model_input: np.ndarray) -> dict[str, float]:
    """Summary statistics of one image, compared with the training ranges at scan time.

    Examples
    --------
    >>> stats = input_statistics(np.ones((10, 20)), np.full((8, 8, 1), 0.5))
    >>> stats["aspect_ratio"], stats["input_mean"]
    (2.0, 0.5)
    """
    height, width = pixels.shape[:2]
    values = np.ascontiguousarray(model_input[..., 0], dtype=np.float32)
    content = (values > 0.02).view(np.uint8)
    count = cv2.countNonZero(content)
    # OpenCV: one pass over the content, no boolean-indexed copy (a hot path of scan).
    mean, std = cv2.meanStdDev(values, mask=content if count else None)
    return {
        "content_fraction": count / content.size,
        "input_mean": float(mean[0, 0]),
        "input_std": float(std[0, 0]),
        "aspect_ratio": float(max(height, width) / max(1, min(height, width))),
    }


def low_quality_reasons(pixels: np.ndarray) -> list[str]:
    """Words describing why an image is too poor to trust (empty when it is fine).

    Examples
    --------
    >>> low_quality_reasons(np.zeros((200, 200)))
    ['blank or near-constant image']
    """
    reasons: list[str] = []
    height, width = pixels.shape[:2]
    if min(height, width) < MIN_SIDE:
        reasons.append(f"tiny image ({width}x{height} px, under {MIN_SIDE} px)")
    if max(height, width) / max(1, min(height, width)) > MAX_ASPECT:
        reasons.append(f"extreme aspect ratio ({width}x{height})")
    values = _sample(pixels)
    low, high = cv2.minMaxLoc(values)[:2]  # OpenCV: one pass, no float64 copy (a hot path of scan)
    spread = float(high - low)
    if spread <= 0 or float(cv2.meanStdDev(values)[1][0, 0]) / spread < MIN_RELATIVE_STD:
        reasons.append("blank or near-constant image")
    return reasons


def _sample(pixels: np.ndarray, side: int = 128) -> np.ndarray:
    """Every k-th pixel of each row and column, k chosen so at most ``side`` remain per side.

    Nearest-neighbour sampling keeps the spread of values (averaging would shrink the noise a
    near-constant image is judged by), at a fraction of a pass over a large image. Decoded types
    (8- and 16-bit, float32) stay as they are, which OpenCV's statistics take directly (no float32
    copy); any other type becomes float32.
    """
    step = max(1, -(-max(pixels.shape[:2]) // side))
    dtype = pixels.dtype if pixels.dtype in (np.uint8, np.uint16, np.float32, np.float64) else np.float32
    return np.ascontiguousarray(pixels[::step, ::step], dtype=dtype)


def training_ranges(statistics: Sequence[Mapping[str, float]]) -> dict[str, list[float]]:
    """The 0.5th-99.5th percentile range of each statistic over the training images (for the card)."""
    ranges: dict[str, list[float]] = {}
    for name in INPUT_STATISTICS:
        values = np.array([s[name] for s in statistics], dtype=np.float64)
        low, high = np.percentile(values, [0.5, 99.5])
        ranges[name] = [round(float(low), 6), round(float(high), 6)]
    return ranges


def unusual_reasons(stats: Mapping[str, float], ranges: Mapping[str, Sequence[float]]) -> list[str]:
    """Statistics that fall well outside the training ranges, described in words.

    Examples
    --------
    >>> unusual_reasons({"input_mean": 0.9}, {"input_mean": [0.2, 0.4]})
    ['input_mean 0.900 outside training range 0.200-0.400']
    """
    reasons: list[str] = []
    for name, (low, high) in ranges.items():
        if name not in stats:
            continue
        slack = max(RANGE_TOLERANCE * (high - low), MIN_SLACK)
        value = stats[name]
        if value < low - slack or value > high + slack:
            reasons.append(f"{name} {value:.3f} outside training range {low:.3f}-{high:.3f}")
    return reasons
