"""Tests of a lesion drawn through a stack of slices (mriscan/synth/stack.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mriscan.synth.lesion import MASS_LABEL
from mriscan.synth.stack import draw_lesion_through

SLICES = 15


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    """Fifteen slices of a textured disc of 'brain' on a dark background, larger towards the middle."""
    rng = np.random.default_rng(3)
    rows, columns = np.indices((128, 128))
    distance = np.hypot(rows - 64, columns - 64)
    radii = 50 - 2.0 * np.abs(np.arange(SLICES) - SLICES // 2)
    return np.stack([np.where(distance < radius, 100 + rng.normal(0, 4, (128, 128)), 5) for radius in radii]
                    ).astype(np.float32)


def _mass_areas(lesion) -> np.ndarray:
    return (lesion.labels == MASS_LABEL).sum(axis=(1, 2))


@pytest.mark.parametrize("seed", range(6))
def test_the_lesion_is_one_run_of_slices_around_its_centre_shrinking_away_from_it(stack, seed):
    lesion = draw_lesion_through(stack, np.random.default_rng(seed), "t2", 1.0, 2.0 * np.arange(SLICES))
    slices = lesion.lesion_slices
    assert lesion.centre_slice in slices and slices == list(range(slices[0], slices[-1] + 1))
    areas = _mass_areas(lesion)
    assert areas[lesion.centre_slice] >= areas[slices[0]] and areas[lesion.centre_slice] >= areas[slices[-1]]
    # Slices the lesion does not reach are left exactly as they were.
    untouched = [k for k in range(SLICES) if not (lesion.labels[k] > 0).any()]
    assert untouched and all(np.array_equal(lesion.stack[k], stack[k]) for k in untouched)
    # An ellipsoid: no deeper across slices than it is wide.
    assert lesion.depth_mm <= lesion.radius_mm
    assert len(slices) <= 2 * lesion.depth_mm / 2.0 + 1


def test_thicker_slices_cut_the_same_lesion_fewer_times(stack):
    thin = draw_lesion_through(stack, np.random.default_rng(1), "flair", 1.0, 1.0 * np.arange(SLICES))
    thick = draw_lesion_through(stack, np.random.default_rng(1), "flair", 1.0, 5.0 * np.arange(SLICES))
    assert (thin.kind, thin.centre_slice, thin.radius_mm) == (thick.kind, thick.centre_slice, thick.radius_mm)
    assert len(thick.lesion_slices) < len(thin.lesion_slices)


def test_the_same_seed_draws_the_same_lesion(stack):
    first = draw_lesion_through(stack, np.random.default_rng(4), "t1", 0.8, 3.0 * np.arange(SLICES))
    again = draw_lesion_through(stack, np.random.default_rng(4), "t1", 0.8, 3.0 * np.arange(SLICES))
    assert np.array_equal(first.stack, again.stack) and np.array_equal(first.labels, again.labels)
