"""Tests of mriscan.explain.overlay: colours, strongest regions, deterministic marked PNG pictures."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from mriscan.explain.base import Explanation
from mriscan.explain.overlay import (
    AWAY_COLOUR,
    TOWARD_COLOUR,
    OverlayCaption,
    blend_evidence,
    caption_lines,
    decision_line,
    render_overlay,
    strongest_regions,
)
from mriscan.io.own_outputs import is_mriscan_overlay

CAPTION = OverlayCaption(probability=0.8731, decision="tumor", threshold=0.5, model_id="0123456789abcdef0123")


def _lime_explanation() -> tuple[np.ndarray, Explanation]:
    """A 60x60 image cut in 36 square superpixels with weights -0.35 .. +0.35, 0 outside the brain (label 0)."""
    rows, columns = np.mgrid[0:60, 0:60]
    segments = (rows // 10 * 6 + columns // 10).astype(np.int32)
    per_segment = np.linspace(-0.35, 0.35, 36)
    per_segment[0] = 0.0
    image = (0.2 + 0.6 * ((rows - 30) ** 2 + (columns - 30) ** 2 < 625))[..., np.newaxis]
    explanation = Explanation(per_segment[segments].astype(np.float32), segments, 0.8731, "lime", "LIME, test")
    return image.astype(np.float32), explanation


def test_blend_paints_positive_red_negative_blue_and_leaves_zero_grey() -> None:
    grey = np.full((1, 3), 0.5)
    rgb = blend_evidence(grey, np.array([[2.0, -2.0, 0.0]]))
    np.testing.assert_allclose(rgb[0, 0], 0.3 * 0.5 + 0.7 * np.array(TOWARD_COLOUR))
    np.testing.assert_allclose(rgb[0, 1], 0.3 * 0.5 + 0.7 * np.array(AWAY_COLOUR))
    np.testing.assert_allclose(rgb[0, 2], [0.5, 0.5, 0.5])


def test_blend_without_evidence_is_the_grey_image() -> None:
    grey = np.linspace(0, 1, 12).reshape(3, 4)
    np.testing.assert_allclose(blend_evidence(grey, np.zeros((3, 4))), np.repeat(grey[..., None], 3, axis=2))


def test_strongest_regions_of_lime_are_the_top_superpixels_of_the_head() -> None:
    _, explanation = _lime_explanation()
    toward, away = strongest_regions(explanation, count=5)
    assert set(np.unique(explanation.segments[toward])) == {31, 32, 33, 34, 35}
    assert set(np.unique(explanation.segments[away])) == {1, 2, 3, 4, 5}


def test_the_segment_outside_the_brain_is_never_a_strongest_region() -> None:
    _, explanation = _lime_explanation()
    assert np.all(explanation.weights[explanation.segments == 0] == 0)
    toward, away = strongest_regions(explanation, count=36)
    assert not (toward | away)[explanation.segments == 0].any()


def test_strongest_regions_of_a_pixel_map_are_above_half_the_extremes() -> None:
    weights = np.array([[1.0, 0.6, 0.4, -0.1, -0.5]])
    toward, away = strongest_regions(Explanation(weights, None, 0.5, "gradcam", ""))
    assert toward.tolist() == [[True, True, False, False, False]]
    assert away.tolist() == [[False, False, False, False, True]]


def test_overlay_bytes_are_deterministic_marked_and_free_of_software_versions() -> None:
    image, explanation = _lime_explanation()
    png = render_overlay(image, explanation, CAPTION)
    assert png == render_overlay(image, explanation, CAPTION)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert b"matplotlib" not in png.lower() and b"Software" not in png
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.size == (800, 480)
        assert picture.text.get("mriscan-overlay") == "lime"


def test_overlay_shows_both_colours_of_evidence() -> None:
    image, explanation = _lime_explanation()
    with Image.open(io.BytesIO(render_overlay(image, explanation, CAPTION))) as picture:
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    reddish = (pixels[..., 0] - pixels[..., 2] > 60).sum()
    bluish = (pixels[..., 2] - pixels[..., 0] > 60).sum()
    assert reddish > 500 and bluish > 500


def test_overlay_of_an_empty_explanation_still_renders() -> None:
    image = np.zeros((32, 32, 1), np.float32)
    explanation = Explanation(np.zeros((32, 32), np.float32), None, 0.1, "gradcam", "Grad-CAM")
    assert render_overlay(image, explanation, CAPTION).startswith(b"\x89PNG")


def test_only_our_pngs_count_as_overlays(tmp_path: Path) -> None:
    image, explanation = _lime_explanation()
    ours = tmp_path / "ours.png.lime.png"
    ours.write_bytes(render_overlay(image, explanation, CAPTION))
    theirs = tmp_path / "theirs.png.lime.png"
    Image.new("L", (8, 8)).save(theirs)
    renamed = tmp_path / "ours.png"  # an overlay without an overlay's name is not taken for one
    renamed.write_bytes(ours.read_bytes())
    assert not is_mriscan_overlay(renamed)
    text = tmp_path / "text.lime.png"
    text.write_text("not a picture")
    assert is_mriscan_overlay(ours)
    assert not is_mriscan_overlay(theirs)
    assert not is_mriscan_overlay(text)
    assert not is_mriscan_overlay(tmp_path / "missing.lime.png")


def test_the_decision_line_tells_probability_and_threshold_apart() -> None:
    assert decision_line(0.19930, 0.19939, "no_tumor") == "P(tumour) 0.1993 < threshold 0.1994: no_tumor"
    assert decision_line(0.199388, 0.199388, "tumor") == "P(tumour) 0.199 ≥ threshold 0.199: tumor"
    assert decision_line(0.1993881, 0.1993880, "tumor") == "P(tumour) 0.1993881 ≥ threshold 0.1993880: tumor"


def test_the_title_names_the_flags_of_a_scanned_image_only() -> None:
    flagged = replace(CAPTION, flag_reasons=("low_quality", "unusual_input"))
    assert caption_lines(flagged, "LIME")[1] == "flagged: low_quality, unusual_input"
    assert caption_lines(replace(CAPTION, flag_reasons=()), "LIME")[1] == "not flagged"
    assert len(caption_lines(CAPTION, "LIME")) == 2


def test_the_original_image_is_shown_beside_the_model_input() -> None:
    image, explanation = _lime_explanation()
    original = np.zeros((300, 220), np.uint16)
    with Image.open(io.BytesIO(render_overlay(image, explanation, CAPTION))) as two:
        with Image.open(io.BytesIO(render_overlay(image, explanation, CAPTION, original))) as three:
            assert three.width == two.width * 3 // 2 and three.height == two.height
