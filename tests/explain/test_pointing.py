"""Explanations of the shipped model point at the lesions the synthetic generator drew."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import REPO

from mriscan.data.preprocess import PreprocessConfig, preprocess, project_mask
from mriscan.explain.pointing import lesion_pairs, pointing_game
from mriscan.io.reader import read_image
from mriscan.model.bundle import load_bundle

SAMPLE = REPO / "sample_data" / "train"


def test_projected_mask_lands_where_the_lesion_is_drawn():
    pixels = np.zeros((300, 200), np.float32)
    cv2.ellipse(pixels, (100, 150), (80, 120), 0, 0, 360, 100.0, -1)
    lesion = np.zeros_like(pixels, bool)
    lesion[140:160, 90:110] = True
    pixels[lesion] = 250.0


    config = PreprocessConfig(image_size=96)
    projected = project_mask(lesion, pixels, config)
    model_input = preprocess(pixels, config)[..., 0]
    assert projected.any() and model_input[projected].mean() > 0.9 > model_input[~projected].mean()


def test_a_mask_of_the_stored_image_is_projected_onto_reduced_pixels():
    pixels = np.zeros((600, 400), np.float32)
    cv2.ellipse(pixels, (200, 300), (160, 240), 0, 0, 360, 100.0, -1)
    lesion = np.zeros_like(pixels, bool)
    lesion[280:320, 180:220] = True
    reduced = cv2.resize(pixels, (200, 300), interpolation=cv2.INTER_AREA)  # a JPEG decoded at 1/2

    config = PreprocessConfig(image_size=96)
    np.testing.assert_array_equal(project_mask(lesion, reduced, config),
                                  project_mask(lesion[::2, ::2], reduced, config))


def test_every_sample_lesion_has_a_mask_inside_the_head():
    pairs = lesion_pairs(SAMPLE)
    assert len(pairs) == len(list((SAMPLE / "yes").iterdir()))
    for image, mask in pairs:
        pixels = read_image(image)[0].pixels
        projected = project_mask(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE) > 127, pixels)
        assert projected.sum() > 5, image.name


@pytest.mark.slow
@pytest.mark.parametrize(("method", "minimum_ratio"), [("lime", 5.0), ("gradcam", 2.0)])
def test_shipped_model_points_at_lesions_far_above_chance(method, minimum_ratio):
    result = pointing_game(load_bundle(None), lesion_pairs(SAMPLE), method, num_samples=300)
    assert result.total == 24
    assert result.hit_rate >= minimum_ratio * result.lesion_share, (result.hit_rate, result.lesion_share)
