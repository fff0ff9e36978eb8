"""Tests of mriscan.data.masks: the brain estimate shared by augmentation, synthesis and explanations."""

from __future__ import annotations

import cv2
import numpy as np

from mriscan.data.masks import brain_mask


def _cropped_head(side: int = 96) -> np.ndarray:
    """A head cut to its box, as preprocessing crops it: the skull ring touches all four edges."""
    image = np.zeros((side, side), np.float32)
    centre, radius = side // 2, side // 2
    cv2.circle(image, (centre, centre), radius, 0.9, -1)
    cv2.circle(image, (centre, centre), radius - 6, 0.4, -1)
    return image


def test_the_rim_is_peeled_where_the_head_touches_the_frame():
    image = _cropped_head()
    brain = brain_mask(image, 0.15) > 0
    skull = image > 0.8
    assert brain[48, 48] and not (brain & skull).any()
    assert not brain[0, :].any() and not brain[:, 0].any() and not brain[-1, :].any()


def test_a_thicker_peel_leaves_less_brain_and_no_head_leaves_everything():
    image = _cropped_head()
    assert brain_mask(image, 0.25).sum() < brain_mask(image, 0.1).sum()
    assert brain_mask(np.zeros((16, 16), np.float32), 0.15).all()
